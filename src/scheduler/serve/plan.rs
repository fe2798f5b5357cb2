//! The scheduler's tick as a pure function. Given each bot's next firing,
//! the bots, which of them are paused, and the time — a clock the caller
//! passes in — it decides what fires now, what missed firings are caught up
//! or skipped (the bot's `catch_up`), and where each bot's cursor moves. No
//! store, no clock of its own, no sleeping: catch-up, DST and excluded dates
//! are unit-tested with a fake clock (the tests below), and the scheduler
//! loop only turns a [`Plan`] into one store batch.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::scheduler::bot::{Bot, CatchUp};

/// At most this many firings per bot are enumerated in one tick (a bot on
/// `* * * * * *` after a month of downtime has 2.6 M of them).
pub const MAX_MISSED: usize = 10_000;

/// Per bot: the next firing to deal with (the last one dealt with is the
/// cursor in the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BotClock {
    pub next: Option<DateTime<Utc>>,
}

/// The time as the tick sees it.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub now: DateTime<Utc>,
    /// Firings up to `now + lead` are enqueued ahead (due at their time).
    pub lead: Duration,
    /// A firing reached later than this was missed: `catch_up` decides.
    pub misfire_grace: Duration,
}

/// A firing to enqueue as a queued run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    pub bot: String,
    pub scheduled_for: DateTime<Utc>,
    /// When it may be claimed: its time, or now for a caught-up firing.
    pub due_at: DateTime<Utc>,
    pub caught_up: bool,
    /// After this the queued run is `expired` instead of started late (the
    /// bot's `max_delay`, by default the time to its next firing).
    pub expires_at: Option<DateTime<Utc>>,
}

/// Missed firings of one bot that are not run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub bot: String,
    pub firings: Vec<DateTime<Utc>>,
    pub reason: &'static str,
}

/// What one tick decided. Bots appear in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub fire: Vec<Firing>,
    pub skipped: Vec<Skipped>,
    /// New cursor per bot: every firing up to it has been dealt with.
    pub cursors: Vec<(String, DateTime<Utc>)>,
    /// The bots' clocks after the tick (apply with [`Plan::apply`]).
    pub clocks: Vec<(String, BotClock)>,
}

impl Plan {
    /// Moves the clocks on (after the plan was written to the store).
    pub fn apply(&self, clocks: &mut HashMap<String, BotClock>) {
        for (name, c) in &self.clocks {
            clocks.insert(name.clone(), *c);
        }
    }
}

fn dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Each bot's clock from its stored cursor. A bot never scheduled before
/// starts at `now`: no catch-up of its past.
pub fn init_clocks(
    bots: &HashMap<String, Arc<Bot>>,
    cursors: &HashMap<String, DateTime<Utc>>,
    now: DateTime<Utc>,
) -> HashMap<String, BotClock> {
    bots.iter()
        .map(|(name, bot)| {
            let cursor = cursors.get(name).copied().unwrap_or(now);
            (
                name.clone(),
                BotClock {
                    next: bot.next_after(cursor),
                },
            )
        })
        .collect()
}

/// When a run queued for `scheduled_for` (claimable from `due_at`) expires:
/// `due_at` + the bot's `max_delay`, by default the time from this firing to
/// the bot's next one (a run never starts after its successor is due).
pub fn expires_at(
    bot: &Bot,
    scheduled_for: DateTime<Utc>,
    due_at: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let delay = match bot.max_delay {
        Some(d) => dur(d),
        None => bot.next_after(scheduled_for)? - scheduled_for,
    };
    due_at.checked_add_signed(delay)
}

/// One tick: every firing up to `now + lead`. `None` when no bot has a
/// firing within that horizon (nothing to write).
pub fn plan(
    clocks: &HashMap<String, BotClock>,
    bots: &HashMap<String, Arc<Bot>>,
    paused: &HashSet<String>,
    t: Now,
) -> Option<Plan> {
    let horizon = t.now + dur(t.lead);
    let mut names: Vec<&String> = clocks
        .iter()
        .filter(|(_, c)| c.next.is_some_and(|n| n <= horizon))
        .map(|(n, _)| n)
        .collect();
    if names.is_empty() {
        return None;
    }
    names.sort();
    let misfire = t.now - dur(t.misfire_grace);
    let mut out = Plan::default();
    for name in names {
        let (Some(bot), Some(clock)) = (bots.get(name), clocks.get(name)) else {
            continue;
        };
        let mut firings = Vec::new();
        let mut next = clock.next;
        while let Some(f) = next {
            if f > horizon || firings.len() >= MAX_MISSED {
                break;
            }
            firings.push(f);
            next = bot.next_after(f);
        }
        let Some(&last) = firings.last() else {
            continue;
        };
        out.clocks.push((
            name.clone(),
            BotClock {
                next: next.filter(|n| *n > last),
            },
        ));
        out.cursors.push((name.clone(), last));
        if !bot.enabled || paused.contains(name) {
            continue; // a paused bot does not fire; its pause is the audit record
        }
        let (missed, due): (Vec<_>, Vec<_>) = firings.into_iter().partition(|f| *f < misfire);
        let caught_up: Vec<DateTime<Utc>> = match bot.catch_up {
            CatchUp::None => Vec::new(),
            CatchUp::Latest => missed.last().copied().into_iter().collect(),
            CatchUp::All => {
                let from = missed.len().saturating_sub(bot.catch_up_limit);
                missed[from..].to_vec()
            }
        };
        let skipped: Vec<DateTime<Utc>> = missed
            .iter()
            .filter(|f| !caught_up.contains(f))
            .copied()
            .collect();
        if !skipped.is_empty() {
            out.skipped.push(Skipped {
                bot: name.clone(),
                firings: skipped,
                reason: skip_reason(bot.catch_up),
            });
        }
        for f in caught_up {
            out.fire.push(Firing {
                bot: name.clone(),
                scheduled_for: f,
                due_at: t.now,
                caught_up: true,
                expires_at: expires_at(bot, f, t.now),
            });
        }
        for f in due {
            out.fire.push(Firing {
                bot: name.clone(),
                scheduled_for: f,
                due_at: f,
                caught_up: false,
                expires_at: expires_at(bot, f, f),
            });
        }
    }
    Some(out)
}

/// Why missed firings are skipped, per `catch_up`.
pub fn skip_reason(c: CatchUp) -> &'static str {
    match c {
        CatchUp::None => {
            "missed: no scheduler was running or the store was unreachable (catch_up: none)"
        }
        CatchUp::Latest => {
            "missed: no scheduler was running or the store was unreachable; only the latest is caught up (catch_up: latest)"
        }
        CatchUp::All => {
            "missed: no scheduler was running or the store was unreachable; beyond catch_up_limit (catch_up: all)"
        }
    }
}

/// How long the scheduler may sleep before the next tick: until the earliest
/// firing is within the lead, at most `tick`.
pub fn wait(
    clocks: &HashMap<String, BotClock>,
    now: DateTime<Utc>,
    lead: Duration,
    tick: Duration,
) -> Duration {
    clocks
        .values()
        .filter_map(|k| k.next)
        .min()
        .map(|next| (next - dur(lead) - now).to_std().unwrap_or(Duration::ZERO))
        .unwrap_or(tick)
        .min(tick)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::bot::load_bot_str;

    const PLAYBOOK: &str = "name: nap\nsteps:\n  - log: hi\n";

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// A bot loaded from text, as `clerk serve` loads it.
    fn bot(dir: &tempfile::TempDir, name: &str, extra: &str) -> Arc<Bot> {
        std::fs::create_dir_all(dir.path().join("bots")).unwrap();
        std::fs::write(dir.path().join("nap.yaml"), PLAYBOOK).unwrap();
        let text = format!("name: {name}\nplaybook: ../nap.yaml\n{extra}");
        let path = dir.path().join("bots").join(format!("{name}.yaml"));
        std::fs::write(&path, &text).unwrap();
        Arc::new(load_bot_str(&text, &path).unwrap_or_else(|d| panic!("{d:?}")))
    }

    fn bots(list: &[Arc<Bot>]) -> HashMap<String, Arc<Bot>> {
        list.iter().map(|b| (b.name.clone(), b.clone())).collect()
    }

    fn at(now: &str) -> Now {
        Now {
            now: utc(now),
            lead: Duration::from_secs(2),
            misfire_grace: Duration::from_secs(10),
        }
    }

    /// Drives the planner with a fake clock from `from` to `to`, waking when
    /// [`wait`] says (as the loop does), and returns every firing.
    fn simulate(
        bots: &HashMap<String, Arc<Bot>>,
        cursors: &HashMap<String, DateTime<Utc>>,
        from: &str,
        to: &str,
    ) -> (Vec<Firing>, Vec<Skipped>) {
        let mut now = utc(from);
        let mut clocks = init_clocks(bots, cursors, now);
        let (mut fired, mut skipped) = (Vec::new(), Vec::new());
        // The loop wakes at least every 250 ms; waking only when `wait` says
        // is the same schedule, without a million idle wake-ups over days.
        let tick = Duration::from_secs(3600);
        while now < utc(to) {
            let t = Now {
                now,
                lead: Duration::from_secs(2),
                misfire_grace: Duration::from_secs(10),
            };
            if let Some(p) = plan(&clocks, bots, &HashSet::new(), t) {
                p.apply(&mut clocks);
                fired.extend(p.fire);
                skipped.extend(p.skipped);
            }
            // A sleeping loop never wakes before `wait`; a busy machine wakes
            // later, which the lead absorbs.
            let w = wait(&clocks, now, Duration::from_secs(2), tick).max(Duration::from_millis(1));
            now += chrono::Duration::from_std(w).unwrap();
        }
        (fired, skipped)
    }

    #[test]
    fn on_time_firings_are_enqueued_ahead_and_due_at_their_time() {
        let dir = tempfile::tempdir().unwrap();
        let b = bots(&[bot(
            &dir,
            "minutely",
            "schedule:\n  - cron: \"* * * * *\"\n",
        )]);
        let clocks = init_clocks(&b, &HashMap::new(), utc("2026-05-04T10:00:30Z"));
        assert_eq!(
            clocks["minutely"].next,
            Some(utc("2026-05-04T10:01:00Z")),
            "a new bot starts now, without catching up its past"
        );
        // Not yet within the lead: nothing to do.
        assert!(plan(&clocks, &b, &HashSet::new(), at("2026-05-04T10:00:57Z")).is_none());
        let p = plan(&clocks, &b, &HashSet::new(), at("2026-05-04T10:00:58.500Z")).unwrap();
        assert_eq!(
            p.fire,
            vec![Firing {
                bot: "minutely".into(),
                scheduled_for: utc("2026-05-04T10:01:00Z"),
                due_at: utc("2026-05-04T10:01:00Z"),
                caught_up: false,
                expires_at: Some(utc("2026-05-04T10:02:00Z")),
            }]
        );
        assert_eq!(
            p.cursors,
            vec![("minutely".into(), utc("2026-05-04T10:01:00Z"))]
        );
        assert_eq!(
            p.clocks,
            vec![(
                "minutely".into(),
                BotClock {
                    next: Some(utc("2026-05-04T10:02:00Z"))
                }
            )]
        );
        assert!(p.skipped.is_empty());
    }

    #[test]
    fn a_slightly_late_firing_still_fires_and_a_missed_one_follows_catch_up() {
        let dir = tempfile::tempdir().unwrap();
        let cron = "schedule:\n  - cron: \"* * * * *\"\n";
        let b = bots(&[
            bot(&dir, "none", &format!("{cron}catch_up: none\n")),
            bot(&dir, "latest", &format!("{cron}catch_up: latest\n")),
            bot(
                &dir,
                "all",
                &format!("{cron}catch_up: all\ncatch_up_limit: 5\n"),
            ),
        ]);
        // The scheduler was down from 09:00 (every cursor) to 10:00:05.
        let cursors: HashMap<String, DateTime<Utc>> = b
            .keys()
            .map(|k| (k.clone(), utc("2026-05-04T09:00:00Z")))
            .collect();
        let clocks = init_clocks(&b, &cursors, utc("2026-05-04T10:00:05Z"));
        let p = plan(&clocks, &b, &HashSet::new(), at("2026-05-04T10:00:05Z")).unwrap();
        // 10:00:00 is 5 s late, within the grace: fired for every bot, due at its time.
        for name in ["all", "latest", "none"] {
            assert!(
                p.fire.iter().any(|f| f.bot == name
                    && f.scheduled_for == utc("2026-05-04T10:00:00Z")
                    && f.due_at == f.scheduled_for
                    && !f.caught_up),
                "{name}: {:?}",
                p.fire
            );
        }
        let count = |name: &str, caught: bool| {
            p.fire
                .iter()
                .filter(|f| f.bot == name && f.caught_up == caught)
                .count()
        };
        let skipped = |name: &str| {
            p.skipped
                .iter()
                .find(|s| s.bot == name)
                .map_or(0, |s| s.firings.len())
        };
        // 09:01 .. 09:59 = 59 missed firings per bot.
        assert_eq!((count("none", true), skipped("none")), (0, 59));
        assert_eq!((count("latest", true), skipped("latest")), (1, 58));
        assert_eq!((count("all", true), skipped("all")), (5, 54));
        let latest: Vec<_> = p
            .fire
            .iter()
            .filter(|f| f.bot == "latest" && f.caught_up)
            .collect();
        assert_eq!(latest[0].scheduled_for, utc("2026-05-04T09:59:00Z"));
        assert_eq!(latest[0].due_at, utc("2026-05-04T10:00:05Z"), "due now");
        let all: Vec<_> = p
            .fire
            .iter()
            .filter(|f| f.bot == "all" && f.caught_up)
            .map(|f| f.scheduled_for)
            .collect();
        assert_eq!(
            all.first(),
            Some(&utc("2026-05-04T09:55:00Z")),
            "the most recent 5"
        );
        assert!(p.skipped[0].reason.contains("catch_up"));
        for (_, c) in &p.cursors {
            assert_eq!(*c, utc("2026-05-04T10:00:00Z"));
        }
        // Every slot dealt with exactly once: fired, caught up or skipped.
        for name in ["all", "latest", "none"] {
            assert_eq!(count(name, true) + count(name, false) + skipped(name), 60);
        }
    }

    #[test]
    fn dst_changes_fire_each_local_slot_once() {
        let dir = tempfile::tempdir().unwrap();
        let b = bots(&[bot(
            &dir,
            "nightly",
            "schedule:\n  - cron: \"30 2 * * *\"\n    timezone: Europe/Brussels\n",
        )]);
        // Spring forward: 02:30 on 2026-03-29 does not exist → 03:00 CEST (01:00Z).
        let (fired, skipped) = simulate(
            &b,
            &HashMap::new(),
            "2026-03-27T12:00:00Z",
            "2026-03-31T12:00:00Z",
        );
        assert!(skipped.is_empty());
        let times: Vec<_> = fired.iter().map(|f| f.scheduled_for).collect();
        assert_eq!(
            times,
            vec![
                utc("2026-03-28T01:30:00Z"),
                utc("2026-03-29T01:00:00Z"),
                utc("2026-03-30T00:30:00Z"),
                utc("2026-03-31T00:30:00Z"),
            ]
        );
        // Fall back: 02:30 on 2026-10-25 happens twice; fired once, at the first.
        let (fired, _) = simulate(
            &b,
            &HashMap::new(),
            "2026-10-24T12:00:00Z",
            "2026-10-26T12:00:00Z",
        );
        let times: Vec<_> = fired.iter().map(|f| f.scheduled_for).collect();
        assert_eq!(
            times,
            vec![utc("2026-10-25T00:30:00Z"), utc("2026-10-26T01:30:00Z")]
        );
        assert!(
            fired
                .iter()
                .all(|f| !f.caught_up && f.due_at == f.scheduled_for)
        );
    }

    #[test]
    fn excluded_dates_and_paused_bots_do_not_fire_but_move_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let daily = "schedule:\n  - cron: \"0 9 * * *\"\n    timezone: Europe/Brussels\n";
        let b = bots(&[
            bot(
                &dir,
                "office",
                &format!("{daily}exclude_dates: [2026-12-25, 2026-12-26]\n"),
            ),
            bot(&dir, "paused", daily),
        ]);
        let (fired, skipped) = simulate(
            &b,
            &HashMap::new(),
            "2026-12-23T12:00:00Z",
            "2026-12-28T12:00:00Z",
        );
        let office: Vec<_> = fired
            .iter()
            .filter(|f| f.bot == "office")
            .map(|f| f.scheduled_for)
            .collect();
        assert_eq!(
            office,
            vec![
                utc("2026-12-24T08:00:00Z"),
                utc("2026-12-27T08:00:00Z"),
                utc("2026-12-28T08:00:00Z"),
            ]
        );
        assert!(skipped.is_empty(), "excluded dates are not missed firings");

        let paused: HashSet<String> = ["paused".to_string()].into();
        let clocks = init_clocks(&b, &HashMap::new(), utc("2026-12-23T12:00:00Z"));
        let p = plan(&clocks, &b, &paused, at("2026-12-24T07:59:59Z")).unwrap();
        assert!(p.fire.iter().all(|f| f.bot != "paused"));
        assert!(p.skipped.is_empty());
        assert!(
            p.cursors
                .contains(&("paused".into(), utc("2026-12-24T08:00:00Z"))),
            "the paused bot's slot is dealt with: it is not fired later"
        );
    }

    #[test]
    fn fake_hours_of_two_second_firings_fire_every_slot_once_and_never_late() {
        let dir = tempfile::tempdir().unwrap();
        let b = bots(&[
            bot(&dir, "every2s", "schedule:\n  - cron: \"*/2 * * * * *\"\n"),
            bot(&dir, "hourly", "schedule:\n  - cron: \"0 * * * *\"\n"),
        ]);
        let (from, to) = ("2026-05-04T00:00:00.100Z", "2026-05-04T02:00:00.100Z");
        let (fired, skipped) = simulate(&b, &HashMap::new(), from, to);
        assert!(skipped.is_empty());
        let mut seen = HashSet::new();
        for f in &fired {
            assert!(
                seen.insert((f.bot.clone(), f.scheduled_for)),
                "fired twice: {f:?}"
            );
            assert_eq!(f.due_at, f.scheduled_for, "never late");
        }
        // Enqueued up to the lead past the end: count the slots inside it.
        let inside = |bot: &str| {
            fired
                .iter()
                .filter(|f| f.bot == bot && f.scheduled_for < utc(to))
                .count()
        };
        assert_eq!(inside("every2s"), 2 * 1800);
        assert_eq!(inside("hourly"), 2);
    }

    #[test]
    fn queued_runs_expire_after_max_delay_or_the_period() {
        let dir = tempfile::tempdir().unwrap();
        let period = bot(&dir, "period", "schedule:\n  - cron: \"*/5 * * * *\"\n");
        let fixed = bot(
            &dir,
            "fixed",
            "schedule:\n  - cron: \"*/5 * * * *\"\nmax_delay: 30s\n",
        );
        let f = utc("2026-05-04T10:05:00Z");
        assert_eq!(expires_at(&period, f, f), Some(utc("2026-05-04T10:10:00Z")));
        assert_eq!(expires_at(&fixed, f, f), Some(utc("2026-05-04T10:05:30Z")));
        // A caught-up firing is due at catch-up time; its delay counts from then.
        let now = utc("2026-05-04T11:00:03Z");
        assert_eq!(
            expires_at(&fixed, f, now),
            Some(utc("2026-05-04T11:00:33Z"))
        );
    }

    #[test]
    fn wait_sleeps_until_the_next_firing_is_within_the_lead() {
        let mut clocks = HashMap::new();
        clocks.insert(
            "a".to_string(),
            BotClock {
                next: Some(utc("2026-05-04T10:00:10Z")),
            },
        );
        let tick = Duration::from_millis(250);
        let lead = Duration::from_secs(2);
        assert_eq!(wait(&clocks, utc("2026-05-04T10:00:00Z"), lead, tick), tick);
        assert_eq!(
            wait(&clocks, utc("2026-05-04T10:00:07.900Z"), lead, tick),
            Duration::from_millis(100)
        );
        assert_eq!(
            wait(&clocks, utc("2026-05-04T10:00:09Z"), lead, tick),
            Duration::ZERO
        );
        assert_eq!(
            wait(&HashMap::new(), utc("2026-05-04T10:00:09Z"), lead, tick),
            tick
        );
    }
}
