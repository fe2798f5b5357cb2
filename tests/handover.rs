//! Hand-over between `clerk serve` processes (issue 17 §2, issue 16 §1):
//! three real `clerk serve` processes on one real PostgreSQL database, each
//! in its own workspace folder with its own host name (`--hostname`) and
//! instance id. The scheduler is stopped cleanly, then the next one is killed
//! with `kill -9`; every schedule slot is counted per (bot, scheduled_for),
//! skipped and expired rows included. Plus `max_delay`: queued runs expire
//! instead of running late. Waits are on observable conditions with
//! deadlines; the measured hand-over figures are printed (see
//! docs/several-machines-sched.md).

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{Backend, Workspace, query};

const PLAYBOOK: &str = r#"name: nap
inputs:
  ms: { type: number, default: 50 }
steps:
  - name: Nap
    wait: "{{ inputs.ms }}ms"
"#;

/// Every second, short; missed firings are not caught up.
const TICK: &str = "name: tick\nplaybook: ../playbooks/nap.yaml\nschedule:\n  - cron: \"* * * * * *\"\noverlap: allow\ncatch_up: none\n";
/// Long runs, so that the killed scheduler has one in flight.
const LONG: &str = "name: long\nplaybook: ../playbooks/nap.yaml\nschedule:\n  - cron: \"*/3 * * * * *\"\ninputs: { ms: 20000 }\noverlap: allow\non_interrupt: retry\n";

/// One workspace folder with the bots (each serve has its own copy).
fn folder(ws: &Workspace) {
    ws.write("playbooks/nap.yaml", PLAYBOOK);
    ws.write("bots/tick.yaml", TICK);
    ws.write("bots/long.yaml", LONG);
    ws.write("clerk.yaml", "max_concurrent_runs: 8\n");
}

/// A running `clerk serve`, its log in a file.
struct Serve {
    child: Option<Child>,
    log: std::path::PathBuf,
    host: String,
}

impl Serve {
    fn start(ws: &Workspace, host: &str) -> Serve {
        let log = ws.path().join(format!("serve-{host}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut c = ws.cmd();
        c.args(["serve", "--grace", "1s", "--hostname", host]);
        c.env("RUST_LOG", "clerk=info");
        c.stdout(Stdio::null()).stderr(file);
        Serve {
            child: Some(c.spawn().expect("start clerk serve")),
            log,
            host: host.into(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The instance id it logged at start (`worker=<id>`).
    fn instance(&self) -> String {
        wait_for(
            &format!("{} to start", self.host),
            Duration::from_secs(30),
            || self.log().contains("clerk serve started"),
        );
        let log = self.log();
        let line = log
            .lines()
            .find(|l| l.contains("clerk serve started"))
            .unwrap();
        let at = line.find("worker=").expect("worker= in the start line") + 7;
        line[at..]
            .split(|c: char| !c.is_ascii_alphanumeric())
            .next()
            .unwrap()
            .to_string()
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id();
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    fn wait_exit(&mut self) -> i32 {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                self.child = None;
                return s.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "clerk serve did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill9(&mut self) {
        self.signal("KILL");
        let _ = self.child.take().unwrap().wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[track_caller]
fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("timestamp {s}: {e}"))
        .with_timezone(&Utc)
}

/// The live scheduler's instance id, by the database clock.
fn scheduler(ws: &Workspace) -> Option<String> {
    query(
        ws,
        "SELECT holder FROM scheduler_lease WHERE name = 'scheduler' AND expires_at > \
         to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    )
    .into_iter()
    .next()
}

/// What happened to each slot of `bot`: (status, lateness of its start in
/// ms); skipped firings that never became a run are `missed`.
fn slots(ws: &Workspace, bot: &str) -> HashMap<DateTime<Utc>, Vec<(String, Option<i64>)>> {
    let mut out: HashMap<DateTime<Utc>, Vec<(String, Option<i64>)>> = HashMap::new();
    for row in query(
        ws,
        &format!(
            "SELECT scheduled_for, status, COALESCE(started_at, ''), queued_at, COALESCE(worker, '') FROM runs \
             WHERE bot = '{bot}' AND scheduled_for IS NOT NULL"
        ),
    ) {
        let c: Vec<&str> = row.split('|').collect();
        let at = ts(c[0]);
        let late = (!c[2].is_empty()).then(|| (ts(c[2]) - at).num_milliseconds());
        if late.is_some_and(|l| l > 1000) {
            println!(
                "slot {} of {bot}: started {} ms late (queued {} ms before its time, worker {})",
                c[0],
                late.unwrap_or_default(),
                (at - ts(c[3])).num_milliseconds(),
                c[4]
            );
        }
        out.entry(at).or_default().push((c[1].to_string(), late));
    }
    for row in query(
        ws,
        &format!(
            "SELECT detail::json->>'scheduled_for' FROM audit_events \
             WHERE kind = 'scheduler.skipped' AND run_id IS NULL AND target = '{bot}'"
        ),
    ) {
        if !row.is_empty() {
            out.entry(ts(&row))
                .or_default()
                .push(("missed".into(), None));
        }
    }
    out
}

fn whole_second_after(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp() + 1, 0).unwrap()
}

#[test]
fn the_scheduler_hands_over_on_stop_and_on_kill_9_postgres() {
    let a = Workspace::new(Backend::Postgres);
    let b = Workspace::sharing_store_of(&a);
    let c = Workspace::sharing_store_of(&a);
    for ws in [&a, &b, &c] {
        folder(ws);
    }
    let mut serves: Vec<Serve> = vec![
        Serve::start(&a, "host-a"),
        Serve::start(&b, "host-b"),
        Serve::start(&c, "host-c"),
    ];
    let ids: Vec<String> = serves.iter().map(Serve::instance).collect();
    assert_eq!(
        ids.iter().collect::<std::collections::HashSet<_>>().len(),
        3,
        "distinct instance ids: {ids:?}"
    );
    wait_for("a scheduler", Duration::from_secs(30), || {
        scheduler(&a).is_some()
    });
    // Warm up: the tick bot runs.
    wait_for("tick runs", Duration::from_secs(30), || {
        query(
            &a,
            "SELECT COUNT(*) FROM runs WHERE bot = 'tick' AND status = 'succeeded'",
        )[0]
        .parse::<i64>()
        .unwrap()
            >= 3
    });
    let window_start = whole_second_after(Utc::now());

    // 1. Clean stop of the scheduler.
    let first = scheduler(&a).unwrap();
    let i = ids.iter().position(|x| *x == first).unwrap();
    let stopped_at = Utc::now();
    let t = Instant::now();
    serves[i].signal("TERM");
    wait_for(
        "another scheduler after the clean stop",
        Duration::from_secs(10),
        || scheduler(&a).is_some_and(|s| s != first),
    );
    let clean_handover = t.elapsed();
    let code = serves[i].wait_exit();
    assert_eq!(code, 0, "{}", serves[i].log());
    let log = serves[i].log();
    assert!(
        log.contains("left queued for the other clerk serve"),
        "the stopping scheduler leaves its firings queued: {log}"
    );
    let clean_end = stopped_at + chrono::Duration::seconds(6);
    wait_for(
        "firings after the clean stop",
        Duration::from_secs(20),
        || {
            slots(&a, "tick").keys().any(|s| *s > clean_end)
                && Utc::now() > clean_end + chrono::Duration::seconds(2)
        },
    );

    // 2. kill -9 of the new scheduler while it runs a long run.
    let second = scheduler(&a).unwrap();
    let j = ids.iter().position(|x| *x == second).unwrap();
    let mut in_flight = String::new();
    wait_for(
        "a long run on the scheduler",
        Duration::from_secs(30),
        || {
            in_flight = query(
            &a,
            &format!(
                "SELECT id FROM runs WHERE bot = 'long' AND status = 'running' AND worker = '{second}' LIMIT 1"
            ),
        )
        .into_iter()
        .next()
        .unwrap_or_default();
            !in_flight.is_empty()
        },
    );
    let killed_at = Utc::now();
    let t = Instant::now();
    serves[j].kill9();
    wait_for("a scheduler after kill -9", Duration::from_secs(5), || {
        scheduler(&a).is_some_and(|s| s != second)
    });
    let takeover = t.elapsed();
    wait_for(
        "the killed worker's run handled",
        Duration::from_secs(10),
        || {
            query(
                &a,
                &format!("SELECT status FROM runs WHERE id = '{in_flight}'"),
            ) == vec!["interrupted".to_string()]
        },
    );
    let interrupted = t.elapsed();
    let kill_end = killed_at + chrono::Duration::seconds(8);
    wait_for("firings after the kill", Duration::from_secs(30), || {
        Utc::now() > kill_end + chrono::Duration::seconds(2)
    });
    let window_end = kill_end;

    // Its job goes on (on_interrupt: retry) in a new run of the same lineage.
    let retry = query(
        &a,
        &format!("SELECT status FROM runs WHERE retry_of = '{in_flight}'"),
    );
    assert_eq!(
        retry.len(),
        1,
        "one continuation of the interrupted run: {retry:?}"
    );

    for (k, s) in serves.iter_mut().enumerate() {
        if s.child.is_some() {
            s.signal("TERM");
            assert_eq!(s.wait_exit(), 0, "serve {k}: {}", s.log());
        }
    }

    // Count every slot of the window per (bot, scheduled_for).
    let tick = slots(&a, "tick");
    let mut holes = Vec::new();
    let mut doubled = Vec::new();
    let (mut clean_late, mut kill_late_max, mut after_kill_late) = (0i64, 0i64, 0i64);
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    let mut s = window_start;
    while s <= window_end {
        match tick.get(&s).map(Vec::as_slice) {
            None | Some([]) => holes.push(s),
            Some([(status, late)]) => {
                *outcomes.entry(status.clone()).or_default() += 1;
                let late = late.unwrap_or(i64::MAX);
                if s >= stopped_at - chrono::Duration::seconds(1) && s <= clean_end {
                    assert_eq!(
                        status, "succeeded",
                        "slot {s} around the clean stop ({late} ms late)"
                    );
                    clean_late = clean_late.max(late);
                } else if s > killed_at && s <= killed_at + chrono::Duration::seconds(5) {
                    assert!(
                        ["succeeded", "expired", "missed"].contains(&status.as_str()),
                        "slot {s} after the kill: {status}"
                    );
                    if status == "succeeded" {
                        kill_late_max = kill_late_max.max(late);
                    }
                } else if s > killed_at + chrono::Duration::seconds(5) {
                    assert_eq!(
                        status, "succeeded",
                        "slot {s} 5 s after the kill ({late} ms late)"
                    );
                    after_kill_late = after_kill_late.max(late);
                }
            }
            Some(more) => doubled.push((s, more.to_vec())),
        }
        s += chrono::Duration::seconds(1);
    }
    println!(
        "clean stop: new scheduler after {clean_handover:?}, slowest start around it {clean_late} ms late; \
         kill -9: lease taken over after {takeover:?}, in-flight run interrupted after {interrupted:?}, \
         slowest start within 5 s {kill_late_max} ms late, after that {after_kill_late} ms late; \
         outcomes {outcomes:?}"
    );
    assert!(holes.is_empty(), "slots never dealt with: {holes:?}");
    assert!(doubled.is_empty(), "slots dealt with twice: {doubled:?}");
    assert!(
        clean_late <= 2000,
        "a firing around the clean stop started {clean_late} ms late"
    );
    assert!(
        after_kill_late <= 2000,
        "a firing 5 s after the kill started {after_kill_late} ms late"
    );
    assert_eq!(
        query(
            &a,
            "SELECT COUNT(*) FROM runs WHERE status IN ('running', 'queued') AND bot = 'tick' AND scheduled_for < (SELECT MAX(scheduled_for) FROM runs WHERE bot = 'tick' AND status = 'succeeded')"
        ),
        vec!["0"]
    );
    a.clerk(&["audit", "verify"]).ok();
}

#[test]
fn queued_runs_expire_after_max_delay_instead_of_running_late() {
    // One run at a time (overlap: queue) of 3 s, fired every second, may
    // wait at most 1 s: the firings queued behind it expire.
    let ws = Workspace::new(Backend::Sqlite);
    ws.write("playbooks/nap.yaml", PLAYBOOK);
    ws.write(
        "bots/slow.yaml",
        "name: slow\nplaybook: ../playbooks/nap.yaml\nschedule:\n  - cron: \"* * * * * *\"\ninputs: { ms: 3000 }\noverlap: queue\nmax_delay: 1s\n",
    );
    let mut serve = Serve::start(&ws, "solo");
    let _ = serve.instance();
    wait_for("expired firings", Duration::from_secs(30), || {
        query(
            &ws,
            "SELECT COUNT(*) FROM runs WHERE bot = 'slow' AND status = 'expired'",
        )[0]
        .parse::<i64>()
        .unwrap()
            >= 3
            && query(
                &ws,
                "SELECT COUNT(*) FROM runs WHERE bot = 'slow' AND status = 'succeeded'",
            )[0]
            .parse::<i64>()
            .unwrap()
                >= 2
    });
    serve.signal("TERM");
    assert_eq!(serve.wait_exit(), 0, "{}", serve.log());
    // No run started more than max_delay after it became due.
    let late: Vec<String> = query(
        &ws,
        "SELECT id || ' ' || scheduled_for || ' ' || started_at FROM runs WHERE bot = 'slow' \
         AND started_at IS NOT NULL AND started_at > expires_at",
    );
    assert!(late.is_empty(), "runs started after they expired: {late:?}");
    // Each expiry is a run status and an audit event with the reason.
    let expired = query(
        &ws,
        "SELECT id FROM runs WHERE bot = 'slow' AND status = 'expired'",
    );
    let events = query(
        &ws,
        "SELECT run_id FROM audit_events WHERE kind = 'run.expired'",
    );
    for id in &expired {
        assert!(events.contains(id), "run {id} expired without its event");
    }
    let shown = ws
        .clerk(&["runs", "list", "--bot", "slow", "--json"])
        .ok()
        .json();
    assert!(
        shown
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["status"] == "expired"
                && r["error"].as_str().unwrap_or("").contains("max_delay")),
        "{shown}"
    );
    ws.clerk(&["audit", "verify"]).ok();
}
