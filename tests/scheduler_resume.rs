//! `clerk serve` and durable work items, with the real `clerk serve` process
//! and a real SQLite store:
//! - serve killed with `kill -9` while a bot run is half way through its
//!   items, then restarted: the run is marked interrupted and resumed in the
//!   same lineage (the bot's default `on_interrupt: resume`), and every item
//!   is done exactly once — the one that was in progress is verified, not
//!   redone;
//! - a bot whose run fails after its mail step and is retried by its
//!   `retry:` policy sends the mail once (a real aiosmtpd counts messages).

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::smtp::SmtpServer;
use common::{Backend, Workspace, query};
use serde_json::Value;

/// Six items, each a file named after the item and the run that wrote it,
/// with a pause so that a kill lands while one is in progress. The `verify`
/// looks for the item's file from any run of the job.
const ITEMS_PLAYBOOK: &str = r#"name: slow-items
steps:
  - id: items
    name: Book each item
    for_each: ["A-1", "A-2", "A-3", "A-4", "A-5", "A-6"]
    as: key
    checkpoint: "{{ key }}"
    verify:
      steps:
        - file.list: { glob: "out/done/{{ key }}--*.txt" }
          save_as: found
      output: "{{ found[0] if found else none }}"
    steps:
      - wait: 400ms
      - file.write: { path: "out/done/{{ key }}--{{ run.id }}.txt", text: "{{ key }}" }
        save_as: written
      - wait: 400ms
    output: "{{ written.path }}"
    save_as: booked
"#;

const MAIL_PLAYBOOK: &str = r#"name: mail-then-fail
steps:
  - id: tell
    mail.send:
      to: team@city.example
      subject: "report of run {{ run.id }}"
      text: "the report"
  - id: break
    fail: "the step after the mail fails"
"#;

/// A running `clerk serve` with its log in a file.
struct Serve {
    child: Option<Child>,
    log: std::path::PathBuf,
}

impl Serve {
    fn start(ws: &Workspace, n: usize) -> Serve {
        let log = ws.path().join(format!("serve-{n}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut c = ws.cmd();
        c.args(["serve", "--grace", "2s"])
            .env("RUST_LOG", "clerk=debug")
            .stdout(Stdio::null())
            .stderr(file);
        Serve {
            child: Some(c.spawn().expect("start clerk serve")),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn stop(&mut self) -> i32 {
        let Some(mut c) = self.child.take() else {
            return -1;
        };
        // SAFETY: a signal to our own child.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = c.try_wait().expect("poll serve") {
                return s.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "serve did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[track_caller]
fn wait_for(what: &str, serve: &Serve, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what}; serve log:\n{}",
            serve.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn count(ws: &Workspace, q: &str) -> i64 {
    query(ws, q)
        .first()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

fn runs(ws: &Workspace, bot: &str) -> Vec<Value> {
    ws.clerk(&["runs", "list", "--bot", bot, "--json"])
        .ok()
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn serve_killed_mid_run_resumes_it_on_restart_and_each_item_is_done_once() {
    let ws = Workspace::new(Backend::Sqlite);
    ws.write("playbooks/slow-items.yaml", ITEMS_PLAYBOOK);
    ws.write(
        "bots/slow.yaml",
        "name: slow\nplaybook: ../playbooks/slow-items.yaml\nschedule: [\"0 0 1 1 *\"]\n",
    );
    let mut serve = Serve::start(&ws, 0);
    ws.clerk(&["bots", "run", "slow"]).ok();
    // Kill while an item is in progress, after two are done.
    wait_for("an item in progress after two done", &serve, || {
        count(&ws, "SELECT COUNT(*) FROM work_items WHERE state = 'done'") >= 2
            && count(
                &ws,
                "SELECT COUNT(*) FROM work_items WHERE state = 'in_progress'",
            ) == 1
    });
    serve.kill9();
    let first = runs(&ws, "slow");
    assert_eq!(first.len(), 1, "{first:#?}");
    assert_eq!(first[0]["status"], "running");
    let first_id = first[0]["id"].as_str().expect("id").to_string();

    let mut again = Serve::start(&ws, 1);
    wait_for("the job to finish in a resumed run", &again, || {
        runs(&ws, "slow").iter().any(|r| r["status"] == "succeeded")
    });
    assert_eq!(again.stop(), 0, "{}", again.log());

    let all = runs(&ws, "slow");
    assert_eq!(all.len(), 2, "the run and its resume: {all:#?}");
    let old = all
        .iter()
        .find(|r| r["id"] == first_id.as_str())
        .expect("first");
    assert_eq!(old["status"], "interrupted", "{old:#}");
    let new = all
        .iter()
        .find(|r| r["id"] != first_id.as_str())
        .expect("resume");
    assert_eq!(new["status"], "succeeded", "{new:#}");
    assert_eq!(new["resumed_from"], first_id.as_str(), "{new:#}");
    assert_eq!(new["lineage"], old["lineage"]);
    assert_eq!(new["attempt"], 2);

    // Each item was done once: one file per item, all six done in the ledger.
    let mut files: Vec<String> = std::fs::read_dir(ws.path().join("out/done"))
        .expect("out/done")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let keys: Vec<&str> = files.iter().filter_map(|f| f.split("--").next()).collect();
    assert_eq!(
        keys,
        ["A-1", "A-2", "A-3", "A-4", "A-5", "A-6"],
        "{files:?}"
    );
    assert_eq!(
        count(&ws, "SELECT COUNT(*) FROM work_items WHERE state = 'done'"),
        6
    );
    // The resumed run did not redo the items done before the kill.
    let written_by_old = files
        .iter()
        .filter(|f| f.contains(first_id.as_str()))
        .count();
    assert!(written_by_old >= 2, "{files:?}");
    // Items count against the run that last changed them: the first run
    // keeps the ones it did, the resume the rest.
    let done_by = |r: &Value| r["items"]["done"].as_i64().unwrap_or(0);
    // (An item the first run wrote but did not finish is verified by the
    // resume and counts there.)
    assert!(
        done_by(old) >= 2 && done_by(old) <= written_by_old as i64,
        "{old:#}"
    );
    assert_eq!(done_by(old) + done_by(new), 6, "{new:#}");
    ws.clerk(&["audit", "verify"]).ok();
}

#[test]
fn on_interrupt_fail_leaves_the_run_interrupted_for_a_person() {
    let ws = Workspace::new(Backend::Sqlite);
    ws.write("playbooks/slow-items.yaml", ITEMS_PLAYBOOK);
    ws.write(
        "bots/slow.yaml",
        "name: slow\nplaybook: ../playbooks/slow-items.yaml\nschedule: [\"0 0 1 1 *\"]\non_interrupt: fail\n",
    );
    let mut serve = Serve::start(&ws, 0);
    ws.clerk(&["bots", "run", "slow"]).ok();
    wait_for("an item in progress", &serve, || {
        count(
            &ws,
            "SELECT COUNT(*) FROM work_items WHERE state = 'in_progress'",
        ) == 1
    });
    serve.kill9();
    let mut again = Serve::start(&ws, 1);
    wait_for("the run marked interrupted", &again, || {
        runs(&ws, "slow")
            .iter()
            .any(|r| r["status"] == "interrupted")
    });
    let event = query(
        &ws,
        "SELECT detail FROM audit_events WHERE kind = 'run.interrupted'",
    );
    assert_eq!(again.stop(), 0, "{}", again.log());
    let all = runs(&ws, "slow");
    assert_eq!(all.len(), 1, "no continuation queued: {all:#?}");
    assert!(
        event
            .iter()
            .any(|d| d.contains("\"on_interrupt\":\"fail\"")),
        "{event:?}"
    );
    // A person can still continue it by hand.
    let id = all[0]["id"].as_str().expect("id");
    let resumed = ws.clerk(&["runs", "resume", id, "--json"]).ok().json();
    assert_eq!(resumed["status"], "succeeded", "{resumed:#}");
    assert_eq!(resumed["lineage"], all[0]["lineage"]);
}

#[test]
fn a_bot_retry_after_the_mail_step_does_not_send_the_mail_again() {
    let smtp = SmtpServer::start(&[]);
    let ws = Workspace::new(Backend::Sqlite);
    ws.write(
        "clerk.yaml",
        &format!(
            "mail:\n  transport: smtp\n  from: clerk@city.example\n  smtp:\n    host: 127.0.0.1\n    port: {}\n    tls: none\n",
            smtp.port
        ),
    );
    ws.write("playbooks/mail-then-fail.yaml", MAIL_PLAYBOOK);
    ws.write(
        "bots/mailer.yaml",
        "name: mailer\nplaybook: ../playbooks/mail-then-fail.yaml\nschedule: [\"0 0 1 1 *\"]\nretry: { attempts: 3, delay: 1s }\n",
    );
    let mut serve = Serve::start(&ws, 0);
    ws.clerk(&["bots", "run", "mailer"]).ok();
    wait_for("three failed attempts", &serve, || {
        let r = runs(&ws, "mailer");
        r.len() == 3 && r.iter().all(|r| r["status"] == "failed")
    });
    assert_eq!(serve.stop(), 0, "{}", serve.log());
    let all = runs(&ws, "mailer");
    let lineages: std::collections::BTreeSet<&str> =
        all.iter().filter_map(|r| r["lineage"].as_str()).collect();
    assert_eq!(lineages.len(), 1, "one job: {all:#?}");
    let mut attempts: Vec<i64> = all.iter().filter_map(|r| r["attempt"].as_i64()).collect();
    attempts.sort();
    assert_eq!(attempts, [1, 2, 3]);
    assert_eq!(
        smtp.messages().len(),
        1,
        "the mail went out once for the job, not once per attempt"
    );
    ws.clerk(&["audit", "verify"]).ok();
}
