//! The scheduler end to end, with real time: the real `clerk serve` process
//! on short 6-field cron schedules (every second or two), against a real
//! SQLite file and a real PostgreSQL database. Waits are generous deadlines
//! for something to happen, never assertions about how fast it happened.

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, Workspace, query};
use serde_json::Value;

const PLAYBOOK: &str = r#"name: nap
inputs:
  ms: { type: number, default: 50 }
  fail: { type: bool, default: false }
steps:
  - name: Nap
    wait: "{{ inputs.ms }}ms"
  - name: Maybe fail
    if: "{{ inputs.fail }}"
    fail: "the portal said no"
  - file.write: { path: "out/{{ run.id }}.txt", text: "done" }
"#;

fn bot(name: &str, cron: &str, extra: &str) -> String {
    format!(
        "name: {name}\nplaybook: ../playbooks/nap.yaml\nschedule:\n  - cron: \"{cron}\"\n{extra}"
    )
}

fn setup(backend: Backend) -> Workspace {
    let ws = Workspace::new(backend);
    ws.write("playbooks/nap.yaml", PLAYBOOK);
    std::fs::create_dir_all(ws.path().join("bots")).unwrap();
    ws
}

/// A running `clerk serve`, its log in a file (so a full pipe never blocks it).
struct Serve {
    child: Option<Child>,
    log: std::path::PathBuf,
}

impl Serve {
    fn start(ws: &Workspace, args: &[&str]) -> Serve {
        let n = std::fs::read_dir(ws.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("serve-"))
            })
            .count();
        let log = ws.path().join(format!("serve-{n}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut c = ws.cmd();
        c.arg("serve").args(args);
        c.env("RUST_LOG", "clerk=debug");
        c.stdout(Stdio::null()).stderr(file);
        Serve {
            child: Some(c.spawn().expect("start clerk serve")),
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Sends SIGTERM and waits for the exit code.
    fn stop(mut self) -> (i32, String) {
        self.signal("TERM");
        let code = self.wait_exit(Duration::from_secs(90));
        (code, self.log())
    }

    fn wait_exit(&mut self, limit: Duration) -> i32 {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                self.child = None;
                return s.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "clerk serve did not exit:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill9(mut self) {
        self.signal("KILL");
        let _ = self.child.take().unwrap().wait();
    }

    fn wait_log(&self, needle: &str) {
        wait_for(&format!("`{needle}` in the serve log"), || {
            self.log().contains(needle)
        });
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
fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn runs(ws: &Workspace, bot: &str) -> Vec<Value> {
    let r = ws
        .clerk(&["runs", "list", "--bot", bot, "--limit", "1000", "--json"])
        .ok();
    r.json().as_array().cloned().unwrap_or_default()
}

fn with_status(runs: &[Value], status: &str) -> usize {
    runs.iter().filter(|r| r["status"] == status).count()
}

fn events(ws: &Workspace, kind: &str) -> Vec<Value> {
    let r = ws.clerk(&["audit", "export", "--format", "jsonl"]).ok();
    r.stdout()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["kind"] == kind)
        .collect()
}

fn ts(v: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().expect("timestamp"))
        .expect("rfc3339")
        .with_timezone(&chrono::Utc)
}

/// Every schedule slot fired at most once. A firing is recorded as a
/// `run.queued` event (a scheduled run, not a retry or a manual run) or, when
/// it was missed and not caught up, a `scheduler.skipped` event without a run;
/// counting those events per (bot, slot) sees a slot fired twice even when
/// the second firing never became a `runs` row (the unique constraint on
/// runs cannot hide it).
fn no_double_firing(ws: &Workspace) {
    let r = ws.clerk(&["audit", "export", "--format", "jsonl"]).ok();
    let all: Vec<Value> = r
        .stdout()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    let doubled = doubled_slots(&all);
    assert!(
        doubled.is_empty(),
        "slots fired more than once: {doubled:?}"
    );
}

/// (bot, slot, firings) for every slot with more than one firing event.
fn doubled_slots(events: &[Value]) -> Vec<(String, String, usize)> {
    let mut per_slot: HashMap<(String, String), usize> = HashMap::new();
    for e in events {
        let d = &e["detail"];
        let Some(slot) = d["scheduled_for"].as_str() else {
            continue;
        };
        let firing = match e["kind"].as_str() {
            Some("run.queued") => d.get("retry_of").is_none() && d.get("manual").is_none(),
            // A skip of a run that was queued is that run's fate, not a firing.
            Some("scheduler.skipped") => e["run_id"].is_null(),
            _ => false,
        };
        if firing {
            let bot = d["bot"].as_str().unwrap_or_default().to_string();
            *per_slot.entry((bot, slot.to_string())).or_default() += 1;
        }
    }
    let mut out: Vec<_> = per_slot
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|((b, s), n)| (b, s, n))
        .collect();
    out.sort();
    out
}

#[test]
fn no_double_firing_sees_a_slot_fired_twice() {
    let queued = serde_json::json!({"kind": "run.queued", "run_id": "A",
        "detail": {"bot": "b", "scheduled_for": "2026-01-01T00:00:00Z"}});
    let missed = serde_json::json!({"kind": "scheduler.skipped", "run_id": null,
        "detail": {"bot": "b", "scheduled_for": "2026-01-01T00:00:00Z"}});
    let fate = serde_json::json!({"kind": "scheduler.skipped", "run_id": "A",
        "detail": {"bot": "b", "scheduled_for": "2026-01-01T00:00:00Z"}});
    let retry = serde_json::json!({"kind": "run.queued", "run_id": "B",
        "detail": {"bot": "b", "scheduled_for": "2026-01-01T00:00:00Z", "retry_of": "A"}});
    assert!(doubled_slots(&[queued.clone(), fate, retry]).is_empty());
    assert_eq!(
        doubled_slots(&[queued.clone(), missed]),
        vec![("b".into(), "2026-01-01T00:00:00Z".into(), 2)]
    );
    assert_eq!(doubled_slots(&[queued.clone(), queued]).len(), 1);
}

// ---------------------------------------------------------------------------

#[test]
fn validate_accepts_the_repository_bots_and_points_at_problems() {
    let root = env!("CARGO_MANIFEST_DIR");
    let ws = setup(Backend::Sqlite);
    let r = ws.clerk(&[
        "validate",
        &format!("{root}/bots"),
        &format!("{root}/playbooks"),
    ]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());

    ws.write(
        "bots/broken.yaml",
        "name: broken\nplaybook: ../playbooks/nap.yaml\nschedule:\n  - cron: \"0 25 * * *\"\n    timezone: Mars/Olympus\n  - cron: \"*/2 * * * * * *\"\ninputs: { ms: 10, colour: red }\ncatch_up: sometimes\nretry: { attempts: 0 }\n",
    );
    ws.write(
        "bots/orphan.yaml",
        "name: orphan\nplaybook: ../playbooks/missing.yaml\nschedule: [\"0 * * * *\"]\n",
    );
    let r = ws.clerk(&["validate", "bots"]);
    assert_eq!(r.code(), 2, "{}{}", r.stdout(), r.stderr());
    let out = r.stdout();
    for expected in [
        "bots/broken.yaml:4:11: invalid cron expression `0 25 * * *`",
        "bots/broken.yaml:5:15: unknown time zone `Mars/Olympus`",
        "bots/broken.yaml:6:11: invalid cron expression `*/2 * * * * * *`: expected 5 fields",
        "bots/broken.yaml:7:19: unknown input `colour` for playbook `nap` (it declares: ms, fail)",
        "bots/broken.yaml:8:11: `catch_up` must be one of none, latest, all, found `sometimes`",
        "bots/broken.yaml:9:20: `retry.attempts` must be a whole number",
        "bots/orphan.yaml:2:11: playbook `../playbooks/missing.yaml` not found",
    ] {
        assert!(out.contains(expected), "missing `{expected}` in:\n{out}");
    }
    assert!(
        !out.contains("panicked") && !out.contains("Error {"),
        "{out}"
    );

    // serve refuses to start and prints them all.
    let r = ws.clerk(&["serve"]);
    assert_eq!(r.code(), 2);
    assert!(
        r.stdout().contains("bots/orphan.yaml:2:11"),
        "{}",
        r.stdout()
    );
    assert!(
        r.stdout().contains("bots/broken.yaml:5:15"),
        "{}",
        r.stdout()
    );
    assert!(r.stderr().contains("not started"), "{}", r.stderr());
}

fn fires_on_schedule(backend: Backend) {
    let ws = setup(backend);
    ws.write("bots/tick.yaml", &bot("tick", "*/2 * * * * *", ""));
    let serve = Serve::start(&ws, &["--grace", "10s"]);
    serve.wait_log("bot scheduled");
    wait_for("three successful runs", || {
        with_status(&runs(&ws, "tick"), "succeeded") >= 3
    });
    let (code, log) = serve.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("bot scheduled bot=tick next="), "{log}");
    assert!(log.contains("this clerk serve is the scheduler"), "{log}");

    let list = runs(&ws, "tick");
    let done: Vec<&Value> = list.iter().filter(|r| r["status"] == "succeeded").collect();
    for r in &done {
        let at = ts(&r["scheduled_for"]);
        // On the schedule: whole, even seconds.
        assert_eq!(at.timestamp() % 2, 0, "{r}");
        assert_eq!(at.timestamp_subsec_micros(), 0, "{r}");
        assert!(ts(&r["started_at"]) >= at, "started before its time: {r}");
        assert_eq!(r["bot"], "tick");
        assert_eq!(r["actor"], "tick");
        assert!(
            ws.path()
                .join(format!("out/{}.txt", r["id"].as_str().unwrap()))
                .exists()
        );
    }
    // Nothing left half-done, and the audit chain holds.
    assert_eq!(with_status(&list, "running"), 0, "{list:?}");
    no_double_firing(&ws);
    ws.clerk(&["audit", "verify"]).ok();
    assert!(events(&ws, "run.queued").len() >= done.len());
}

#[test]
fn fires_on_schedule_sqlite() {
    fires_on_schedule(Backend::Sqlite);
}

#[test]
fn fires_on_schedule_postgres() {
    fires_on_schedule(Backend::Postgres);
}

/// (start, end) of each finished run of `bot`.
fn intervals(
    list: &[Value],
) -> Vec<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> {
    let mut v: Vec<_> = list
        .iter()
        .filter(|r| !r["started_at"].is_null() && !r["finished_at"].is_null())
        .map(|r| (ts(&r["started_at"]), ts(&r["finished_at"])))
        .collect();
    v.sort();
    v
}

#[test]
fn overlap_skip_and_queue() {
    let ws = setup(Backend::Sqlite);
    ws.write(
        "bots/skipper.yaml",
        &bot(
            "skipper",
            "* * * * * *",
            "inputs: { ms: 2500 }\noverlap: skip\n",
        ),
    );
    ws.write(
        "bots/queuer.yaml",
        &bot(
            "queuer",
            "*/2 * * * * *",
            "inputs: { ms: 3000 }\noverlap: queue\n",
        ),
    );
    std::fs::write(ws.path().join("clerk.yaml"), "max_concurrent_runs: 4\n").unwrap();
    let serve = Serve::start(&ws, &[]);
    wait_for("skipped firings and two finished runs of each bot", || {
        let s = runs(&ws, "skipper");
        let q = runs(&ws, "queuer");
        with_status(&s, "skipped") >= 2
            && with_status(&s, "succeeded") >= 2
            && with_status(&q, "succeeded") >= 2
    });
    let (code, log) = serve.stop();
    assert_eq!(code, 0, "{log}");

    // skip: never two runs at once, and every skipped firing is said out loud.
    let s = runs(&ws, "skipper");
    for w in intervals(&s).windows(2) {
        assert!(w[1].0 >= w[0].1, "skipper runs overlapped: {w:?}");
    }
    let skipped = events(&ws, "scheduler.skipped");
    let overlap_skips = skipped
        .iter()
        .filter(|e| {
            e["target"] == "skipper"
                && e["detail"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("overlap: skip"))
        })
        .count();
    assert!(overlap_skips >= 2, "{skipped:?}");
    let list = ws.clerk(&["bots", "list"]).ok().stdout();
    assert!(list.contains("warning: bot skipper:"), "{list}");
    assert!(list.contains("firing(s) skipped"), "{list}");

    // queue: firings wait their turn, none skipped for overlap, never concurrent.
    let q = runs(&ws, "queuer");
    for w in intervals(&q).windows(2) {
        assert!(w[1].0 >= w[0].1, "queuer runs overlapped: {w:?}");
    }
    assert!(
        !skipped.iter().any(|e| e["target"] == "queuer"
            && e["detail"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("overlap"))),
        "{skipped:?}"
    );
    no_double_firing(&ws);
}

#[test]
fn max_runtime_times_out_and_failures_retry_then_mail() {
    let ws = setup(Backend::Sqlite);
    ws.write(
        "bots/sleepy.yaml",
        &bot(
            "sleepy",
            "*/2 * * * * *",
            "inputs: { ms: 20000 }\nmax_runtime: 1s\n",
        ),
    );
    ws.write(
        "bots/grumpy.yaml",
        &bot(
            "grumpy",
            "0 0 1 1 *",
            "inputs: { fail: true }\nretry: { attempts: 2, delay: 1s }\nnotify: { on_failure: [rpa-team@city.example] }\n",
        ),
    );
    let serve = Serve::start(&ws, &[]);
    serve.wait_log("bot scheduled bot=sleepy");
    // grumpy never fires by itself this year: run it by hand.
    let r = ws.clerk_env(&["bots", "run", "grumpy", "--wait"], &[("USER", "alice")]);
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    assert!(r.stdout().contains("failed"), "{}", r.stdout());
    wait_for("a timed-out run and the retried failure", || {
        with_status(&runs(&ws, "sleepy"), "timed_out") >= 1
            && with_status(&runs(&ws, "grumpy"), "failed") >= 2
    });
    wait_for("the failure mail", || {
        std::fs::read_dir(ws.path().join(".clerk/outbox"))
            .map(|d| d.count() > 0)
            .unwrap_or(false)
    });
    let (code, log) = serve.stop();
    assert_eq!(code, 0, "{log}");

    let s = runs(&ws, "sleepy");
    let t = s.iter().find(|r| r["status"] == "timed_out").unwrap();
    assert!(
        t["error"].as_str().unwrap().contains("max_runtime of 1s"),
        "{t}"
    );
    let g = runs(&ws, "grumpy");
    assert_eq!(g.len(), 2, "one run and one retry: {g:?}");
    let mut attempts: Vec<i64> = g.iter().map(|r| r["attempt"].as_i64().unwrap()).collect();
    attempts.sort();
    assert_eq!(attempts, vec![1, 2]);
    assert!(g.iter().all(|r| r["actor"] == "alice"), "{g:?}");
    let last = g.iter().find(|r| r["attempt"] == 2).unwrap();
    let id = last["id"].as_str().unwrap();
    let outbox: Vec<_> = std::fs::read_dir(ws.path().join(".clerk/outbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        outbox.len(),
        1,
        "one mail after the last attempt: {outbox:?}"
    );
    let mail = std::fs::read_to_string(&outbox[0]).unwrap();
    assert!(mail.contains("To: rpa-team@city.example"), "{mail}");
    assert!(mail.contains(id), "run id in {mail}");
    assert!(mail.contains("Maybe fail"), "failing step in {mail}");
    assert!(mail.contains("the portal said no"), "error in {mail}");
    let sent = events(&ws, "notify.sent");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["run_id"], id);
    assert_eq!(sent[0]["target"], "rpa-team@city.example");
}

#[test]
fn sigterm_waits_for_the_grace_period_then_interrupts() {
    let ws = setup(Backend::Sqlite);
    ws.write(
        "bots/long.yaml",
        &bot("long", "* * * * * *", "inputs: { ms: 60000 }\n"),
    );
    ws.write(
        "bots/short.yaml",
        &bot("short", "*/2 * * * * *", "inputs: { ms: 1500 }\n"),
    );
    let serve = Serve::start(&ws, &["--grace", "3s"]);
    wait_for("both bots running", || {
        with_status(&runs(&ws, "long"), "running") == 1
            && with_status(&runs(&ws, "short"), "running") == 1
    });
    let (code, log) = serve.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("grace period over"), "{log}");
    // The short run finished within the grace period; the long one was
    // cancelled and marked interrupted; nothing is left running.
    let short = runs(&ws, "short");
    assert!(with_status(&short, "succeeded") >= 1, "{short:?}");
    let long = runs(&ws, "long");
    assert_eq!(with_status(&long, "interrupted"), 1, "{long:?}");
    assert_eq!(with_status(&long, "running"), 0);
    let i = long.iter().find(|r| r["status"] == "interrupted").unwrap();
    assert!(
        i["error"].as_str().unwrap().contains("grace period of 3s"),
        "{i}"
    );
    assert_eq!(
        query(&ws, "SELECT COUNT(*) FROM runs WHERE status IN ('running')"),
        vec!["0"]
    );
    ws.clerk(&["audit", "verify"]).ok();
}

#[test]
fn restart_marks_runs_of_a_crashed_serve_interrupted() {
    let ws = setup(Backend::Sqlite);
    ws.write(
        "bots/long.yaml",
        &bot("long", "*/2 * * * * *", "inputs: { ms: 60000 }\n"),
    );
    let serve = Serve::start(&ws, &[]);
    wait_for("a running run", || {
        with_status(&runs(&ws, "long"), "running") == 1
    });
    serve.kill9();
    let crashed = runs(&ws, "long");
    let id = crashed.iter().find(|r| r["status"] == "running").unwrap()["id"].clone();
    let again = Serve::start(&ws, &["--grace", "1s"]);
    wait_for("the crashed run marked interrupted", || {
        runs(&ws, "long")
            .iter()
            .any(|r| r["id"] == id && r["status"] == "interrupted")
    });
    let (code, log) = again.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("took over the scheduler lease"), "{log}");
    let r = runs(&ws, "long");
    let i = r.iter().find(|r| r["id"] == id).unwrap();
    assert!(
        i["error"]
            .as_str()
            .unwrap()
            .contains("stopped while the run was running"),
        "{i}"
    );
    ws.clerk(&["audit", "verify"]).ok();
}

#[test]
fn pause_and_resume_are_persisted_and_audited() {
    let ws = setup(Backend::Sqlite);
    ws.write("bots/tick.yaml", &bot("tick", "* * * * * *", ""));
    let r = ws
        .clerk_env(&["bots", "pause", "tick"], &[("USER", "alice")])
        .ok();
    assert!(r.stdout().contains("bot tick paused"));
    let r = ws
        .clerk_env(&["bots", "pause", "tick"], &[("USER", "alice")])
        .ok();
    assert!(r.stdout().contains("already paused"));
    let r = ws.clerk(&["bots", "pause", "tock"]);
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().contains("no valid bot named `tock`"),
        "{}",
        r.stderr()
    );

    let list = ws.clerk(&["bots", "list", "--json"]).ok().json();
    assert_eq!(list[0]["state"], "paused");

    // A serve started while the bot is paused never fires it: once the
    // scheduler has dealt with 3 of its slots (its cursor moved past them),
    // none of them became a run.
    let started = chrono::Utc::now();
    let serve = Serve::start(&ws, &[]);
    serve.wait_log("this clerk serve is the scheduler");
    wait_for("the scheduler to pass 3 slots of the paused bot", || {
        cursor(&ws, "tick").is_some_and(|c| c >= started + chrono::Duration::seconds(3))
    });
    let (code, log) = serve.stop();
    assert_eq!(code, 0, "{log}");
    assert_eq!(runs(&ws, "tick").len(), 0, "a paused bot fired");

    ws.clerk_env(&["bots", "resume", "tick"], &[("USER", "bob")])
        .ok();
    let serve = Serve::start(&ws, &[]);
    wait_for("runs after resume", || {
        with_status(&runs(&ws, "tick"), "succeeded") >= 2
    });
    // Pausing takes effect on the running serve too (it reads the store):
    // after the pause, the scheduler passes slot after slot and the number of
    // runs of the bot stays what it was once the runs in flight settled.
    ws.clerk(&["bots", "pause", "tick"]).ok();
    let paused_at = chrono::Utc::now();
    let settled = |after: chrono::DateTime<chrono::Utc>| {
        wait_for("the scheduler to pass 3 slots after the pause", || {
            cursor(&ws, "tick").is_some_and(|c| c >= after + chrono::Duration::seconds(3))
        });
        wait_for("runs in flight to settle", || {
            let r = runs(&ws, "tick");
            with_status(&r, "queued") + with_status(&r, "running") == 0
        });
        runs(&ws, "tick").len()
    };
    let before = settled(paused_at);
    let after = settled(chrono::Utc::now());
    assert_eq!(before, after, "a paused bot kept firing");
    let (code, log) = serve.stop();
    assert_eq!(code, 0, "{log}");

    let pauses = events(&ws, "admin.pause");
    let resumes = events(&ws, "admin.resume");
    assert_eq!(pauses.len(), 2);
    assert_eq!(pauses[0]["actor"], "alice");
    assert_eq!(pauses[0]["target"], "tick");
    assert_eq!(resumes.len(), 1);
    assert_eq!(resumes[0]["actor"], "bob");
}

fn two_serves_never_double_fire(backend: Backend) {
    let ws = setup(backend);
    for i in 0..5 {
        ws.write(
            &format!("bots/b{i}.yaml"),
            &bot(&format!("b{i}"), "* * * * * *", "overlap: allow\n"),
        );
    }
    let a = Serve::start(&ws, &[]);
    a.wait_log("this clerk serve is the scheduler");
    let b = Serve::start(&ws, &[]);
    b.wait_log("running as a worker only");
    wait_for("runs of every bot", || {
        (0..5).all(|i| with_status(&runs(&ws, &format!("b{i}")), "succeeded") >= 4)
    });
    // Stop the scheduler: the second serve takes over and goes on firing.
    let (code, log) = a.stop();
    assert_eq!(code, 0, "{log}");
    b.wait_log("this clerk serve is the scheduler for the store");
    let before = runs(&ws, "b0").len();
    wait_for("firings by the new scheduler", || {
        runs(&ws, "b0").len() > before + 2
    });
    let (code, log) = b.stop();
    assert_eq!(code, 0, "{log}");

    no_double_firing(&ws);
    // Both processes ran runs.
    let workers = query(
        &ws,
        "SELECT COUNT(DISTINCT worker) FROM runs WHERE worker IS NOT NULL",
    );
    assert_eq!(
        workers,
        vec!["2"],
        "runs should be spread over both processes"
    );
    assert_eq!(
        query(&ws, "SELECT COUNT(*) FROM runs WHERE status = 'running'"),
        vec!["0"]
    );
    ws.clerk(&["audit", "verify"]).ok();
}

#[test]
fn two_serves_never_double_fire_sqlite() {
    two_serves_never_double_fire(Backend::Sqlite);
}

#[test]
fn two_serves_never_double_fire_postgres() {
    two_serves_never_double_fire(Backend::Postgres);
}

/// The bot's scheduler cursor (every slot up to it has been dealt with).
fn cursor(ws: &Workspace, bot: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let rows = query(
        ws,
        &format!("SELECT fired_through FROM scheduler_cursor WHERE bot = '{bot}'"),
    );
    rows.first()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t.trim()).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
}

fn set_cursor(ws: &Workspace, bot: &str, at: &str) {
    common::sql(
        ws,
        &format!(
            "INSERT INTO scheduler_cursor (bot, fired_through, updated_at) VALUES ('{bot}', '{at}', '{at}')"
        ),
    );
}

#[test]
fn catch_up_after_downtime() {
    let ws = setup(Backend::Sqlite);
    // Open the store once so that the schema exists.
    ws.clerk(&["runs", "list"]).ok();
    // The scheduler last ran two minutes ago: 24 firings were missed.
    let at = (chrono::Utc::now() - chrono::Duration::seconds(120))
        .format("%Y-%m-%dT%H:%M:%S.000000Z")
        .to_string();
    for (name, policy) in [("none", "none"), ("latest", "latest"), ("all", "all")] {
        ws.write(
            &format!("bots/{name}.yaml"),
            &bot(
                name,
                "*/5 * * * * *",
                &format!("catch_up: {policy}\ncatch_up_limit: 3\noverlap: allow\n"),
            ),
        );
        set_cursor(&ws, name, &at);
    }
    let serve = Serve::start(&ws, &[]);
    wait_for("catch-up runs done", || {
        with_status(&runs(&ws, "all"), "succeeded") >= 3
            && with_status(&runs(&ws, "latest"), "succeeded") >= 1
    });
    let (code, log) = serve.stop();
    assert_eq!(code, 0, "{log}");

    let caught = events(&ws, "scheduler.caught_up");
    let skipped = events(&ws, "scheduler.skipped");
    let count = |list: &[Value], bot: &str| list.iter().filter(|e| e["target"] == bot).count();
    assert_eq!(count(&caught, "none"), 0);
    assert_eq!(count(&caught, "latest"), 1);
    assert_eq!(count(&caught, "all"), 3);
    // Every missed firing not caught up is an event: about 22-24 of them.
    let missed = |bot: &str| {
        skipped
            .iter()
            .filter(|e| {
                e["target"] == bot
                    && e["detail"]["reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("missed"))
            })
            .count()
    };
    assert!((20..=24).contains(&missed("none")), "{}", missed("none"));
    assert_eq!(missed("none"), missed("latest") + 1);
    assert_eq!(missed("none"), missed("all") + 3);
    // Caught-up runs carry their original (missed) firing time.
    let all = runs(&ws, "all");
    for e in caught.iter().filter(|e| e["target"] == "all") {
        let run = all
            .iter()
            .find(|r| r["id"] == e["detail"]["run"])
            .unwrap_or_else(|| panic!("no run for {e}"));
        assert_eq!(ts(&run["scheduled_for"]), ts(&e["detail"]["scheduled_for"]));
        assert!(ts(&run["scheduled_for"]) < ts(&run["queued_at"]), "{run}");
        assert_eq!(run["status"], "succeeded");
    }
    no_double_firing(&ws);
}

#[test]
fn bots_list_shows_schedule_next_firings_and_last_run() {
    let ws = setup(Backend::Sqlite);
    ws.write(
        "bots/night.yaml",
        "name: night\nplaybook: ../playbooks/nap.yaml\nschedule:\n  - cron: \"30 2 * * Mon-Fri\"\n    timezone: Europe/Brussels\nenabled: false\n",
    );
    ws.write("bots/tick.yaml", &bot("tick", "* * * * * *", ""));
    let r = ws.clerk(&["bots", "run", "tick", "--input", "ms=10"]).ok();
    assert!(r.stdout().contains("queued (bot tick)"), "{}", r.stdout());
    let r = ws.clerk(&["bots", "run", "tick", "--input", "ms=soon"]);
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("input `ms`"), "{}", r.stderr());

    let list = ws.clerk(&["bots", "list", "--json"]).ok().json();
    let by: HashMap<String, Value> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["name"].as_str().unwrap().to_string(), b.clone()))
        .collect();
    let night = &by["night"];
    assert_eq!(night["timezone"], "Europe/Brussels");
    assert_eq!(night["schedule"][0]["cron"], "30 2 * * Mon-Fri");
    assert_eq!(night["state"], "disabled");
    let next = night["next"].as_array().unwrap();
    assert_eq!(next.len(), 3);
    for n in next {
        let t = chrono::DateTime::parse_from_rfc3339(n.as_str().unwrap()).unwrap();
        let local = t.with_timezone(&chrono_tz::Europe::Brussels);
        assert_eq!(local.format("%H:%M").to_string(), "02:30", "{n}");
        use chrono::Datelike;
        assert!(local.weekday().number_from_monday() <= 5, "{n}");
    }
    assert!(night["last_run"].is_null());
    let tick = &by["tick"];
    assert_eq!(tick["state"], "enabled");
    assert_eq!(tick["last_run"]["status"], "queued");
    let text = ws.clerk(&["bots", "list"]).ok().stdout();
    assert!(
        text.contains("night") && text.contains("disabled"),
        "{text}"
    );
    assert!(text.contains("Europe/Brussels"), "{text}");
}

#[test]
fn sighup_reloads_the_bots_folder() {
    let ws = setup(Backend::Sqlite);
    ws.write("bots/first.yaml", &bot("first", "*/2 * * * * *", ""));
    let serve = Serve::start(&ws, &[]);
    serve.wait_log("this clerk serve is the scheduler");
    // A broken file is reported and the old bots stay.
    ws.write(
        "bots/broken.yaml",
        "name: broken\nplaybook: nope.yaml\nschedule: [\"x\"]\n",
    );
    serve.signal("HUP");
    serve.wait_log("keeping the bots loaded before");
    std::fs::remove_file(ws.path().join("bots/broken.yaml")).unwrap();
    ws.write("bots/second.yaml", &bot("second", "* * * * * *", ""));
    serve.signal("HUP");
    serve.wait_log("SIGHUP: bots reloaded");
    wait_for("the new bot firing", || {
        with_status(&runs(&ws, "second"), "succeeded") >= 2
            && with_status(&runs(&ws, "first"), "succeeded") >= 1
    });
    let (code, log) = serve.stop();
    assert_eq!(code, 0, "{log}");
}

#[test]
fn a_locked_sqlite_store_does_not_stop_the_schedule() {
    let ws = setup(Backend::Sqlite);
    ws.write(
        "bots/tick.yaml",
        &bot("tick", "* * * * * *", "overlap: allow\n"),
    );
    let serve = Serve::start(&ws, &[]);
    wait_for("first runs", || {
        with_status(&runs(&ws, "tick"), "succeeded") >= 2
    });
    // Another program holds an exclusive lock for longer than clerk's busy
    // timeout (10 s): clerk's writes fail for a while.
    let db = ws.path().join(".clerk/clerk.db");
    let lock = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3,sys,time\n\
             c=sqlite3.connect(sys.argv[1],isolation_level=None)\n\
             c.execute('BEGIN EXCLUSIVE')\n\
             print('locked',flush=True)\n\
             time.sleep(14)\n\
             c.execute('COMMIT')\n",
        )
        .arg(&db)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lock.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("locked"));
    let unlocked = chrono::Utc::now();
    wait_for("runs fired after the lock was released", || {
        runs(&ws, "tick")
            .iter()
            .any(|r| r["status"] == "succeeded" && ts(&r["scheduled_for"]) > unlocked)
    });
    let (code, log) = serve.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("database is locked"), "no outage seen:\n{log}");
    no_double_firing(&ws);
    ws.clerk(&["audit", "verify"]).ok();
    // No firing was lost silently: every second from the first run to the
    // last is either a run or a `scheduler.skipped` event (late by more than
    // the misfire grace while the store was locked; catch_up: none).
    let list = runs(&ws, "tick");
    let mut seen: std::collections::BTreeSet<i64> = list
        .iter()
        .map(|r| ts(&r["scheduled_for"]).timestamp())
        .collect();
    for e in events(&ws, "scheduler.skipped") {
        if let Some(t) = e["detail"]["scheduled_for"].as_str() {
            seen.insert(ts(&Value::from(t)).timestamp());
        }
    }
    let (first, last) = (*seen.first().unwrap(), *seen.last().unwrap());
    let missing: Vec<i64> = (first..=last).filter(|t| !seen.contains(t)).collect();
    assert!(
        missing.is_empty(),
        "firings lost without a trace: {missing:?}"
    );
    assert!(last - first >= 14, "the schedule did not span the outage");
}

#[test]
fn dropped_postgres_connections_do_not_stop_the_schedule() {
    let ws = setup(Backend::Postgres);
    ws.write(
        "bots/tick.yaml",
        &bot("tick", "* * * * * *", "overlap: allow\n"),
    );
    let serve = Serve::start(&ws, &[]);
    wait_for("first runs", || {
        with_status(&runs(&ws, "tick"), "succeeded") >= 2
    });
    let db = ws
        .db_url
        .as_ref()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    // The database refuses connections and every connection clerk has is
    // dropped; three seconds later it is back.
    let admin = |q: &str| {
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-qAt",
                "-c",
                q,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{q}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    admin(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false"));
    admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{db}' AND pid <> pg_backend_pid()"
    ));
    std::thread::sleep(Duration::from_secs(3));
    admin(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"));
    let after = chrono::Utc::now();
    wait_for("runs fired after the connections were dropped", || {
        runs(&ws, "tick")
            .iter()
            .any(|r| r["status"] == "succeeded" && ts(&r["scheduled_for"]) > after)
    });
    let (code, log) = serve.stop();
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("store unavailable") || log.contains("transient store error"),
        "no dropped connection seen:\n{log}"
    );
    no_double_firing(&ws);
    ws.clerk(&["audit", "verify"]).ok();
}
