//! Bots' failure notices (`notify.on_failure`) end to end: the real `clerk
//! serve` runs a bot whose playbook fails, and the notice goes out through
//! `mail.send` and the configured transport — the file outbox with the
//! failed browser step's screenshot attached (real Chromium against the real
//! legacy portal), and SMTP to a real aiosmtpd server on loopback. Messages
//! are read with Python's `email` package (`tests/support/eml.py`), as a mail
//! reader would.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::portal::Portal;
use common::smtp::{SmtpServer, leaves, one_header, parse_eml};
use common::{Backend, Workspace};
use serde_json::{Value, json};

// ---------------------------------------------------------------- support

/// The text body of a parsed message (the first text/plain leaf that is no attachment).
fn body_text(msg: &Value) -> String {
    leaves(&msg["body"])
        .into_iter()
        .find(|p| p["content_type"] == "text/plain" && p["disposition"] != "attachment")
        .and_then(|p| p["text"].as_str())
        .unwrap_or_else(|| panic!("no text body in {msg:#}"))
        .to_string()
}

/// A running `clerk serve`, its log in a file (so a full pipe never blocks it).
struct Serve {
    child: Option<Child>,
    log: PathBuf,
}

impl Serve {
    fn start(ws: &Workspace, env: &[(&str, &str)]) -> Serve {
        let log = ws.path().join("serve.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut c = ws.cmd();
        c.arg("serve");
        c.env("RUST_LOG", "clerk=debug");
        for (k, v) in env {
            c.env(k, v);
        }
        c.stdout(Stdio::null()).stderr(file);
        let serve = Serve {
            child: Some(c.spawn().expect("start clerk serve")),
            log,
        };
        wait_for("clerk serve to schedule its bots", || {
            serve.log().contains("bot scheduled")
        });
        serve
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and returns the exit code and the log.
    fn stop(mut self) -> (i32, String) {
        let mut child = self.child.take().unwrap();
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return (s.code().unwrap_or(-1), self.log());
            }
            assert!(
                Instant::now() < deadline,
                "clerk serve did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[track_caller]
fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !ok() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn events(ws: &Workspace) -> Vec<Value> {
    let r = ws.clerk(&["audit", "export", "--format", "jsonl"]).ok();
    r.stdout()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("jsonl"))
        .collect()
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

fn runs(ws: &Workspace, bot: &str) -> Vec<Value> {
    let r = ws
        .clerk(&["runs", "list", "--bot", bot, "--limit", "100", "--json"])
        .ok();
    r.json().as_array().cloned().unwrap_or_default()
}

fn sha256(bytes: &[u8]) -> String {
    clerk::fsutil::sha256_hex(bytes)
}

/// A bot that never fires by itself this year (the tests run it by hand).
fn bot(name: &str, playbook: &str, extra: &str) -> String {
    format!(
        "name: {name}\nplaybook: ../playbooks/{playbook}\nschedule:\n  - cron: \"0 0 1 1 *\"\n{extra}"
    )
}

// ---------------------------------------------------------------- tests

const PORTAL_PLAYBOOK: &str = r#"name: portal-reports
inputs:
  portal: { type: string }
steps:
  - browser.open: "{{ inputs.portal }}/login"
  - name: Open the reports
    browser.click: { text: "Quarterly reports", timeout: 1s }
"#;

/// A browser step fails on the real portal and leaves a screenshot; the
/// bot's failure notice lands in the outbox with that screenshot attached,
/// byte for byte, and the audit ties the notice to the failed run.
#[test]
fn failure_notice_attaches_the_failed_runs_screenshot() {
    let portal = Portal::start(&[]);
    let ws = Workspace::new(Backend::Sqlite);
    ws.write("playbooks/portal.yaml", PORTAL_PLAYBOOK);
    ws.write(
        "bots/reports.yaml",
        &bot(
            "reports",
            "portal.yaml",
            &format!(
                "inputs: {{ portal: \"{}\" }}\nnotify: {{ on_failure: [rpa-team@city.example] }}\n",
                portal.url
            ),
        ),
    );
    let serve = Serve::start(&ws, &[]);
    let r = ws.clerk(&["bots", "run", "reports", "--wait"]);
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    let outbox = ws.path().join(".clerk/outbox");
    wait_for("the failure mail in the outbox", || {
        std::fs::read_dir(&outbox).is_ok_and(|d| d.count() > 0)
    });
    let (code, log) = serve.stop();
    assert_eq!(code, 0, "{log}");

    let run = runs(&ws, "reports");
    assert_eq!(run.len(), 1, "{run:?}");
    let run_id = run[0]["id"].as_str().unwrap();
    assert_eq!(run[0]["status"], "failed");

    // The failed click's evidence, as the audit recorded it.
    let all = events(&ws);
    let failed = all
        .iter()
        .find(|e| e["run_id"] == run_id && e["kind"] == "action" && e["outcome"] == "failed")
        .expect("the failed action event");
    assert_eq!(failed["action"], "browser.click");
    let recorded = failed["detail"]["artifacts"].as_array().unwrap();
    let shot = recorded
        .iter()
        .find(|a| a["path"].as_str().unwrap().ends_with(".png"))
        .expect("a screenshot artifact");
    let shot_path = shot["path"].as_str().unwrap();
    let shot_bytes = std::fs::read(ws.path().join(shot_path)).unwrap();
    assert_eq!(&shot_bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(shot["sha256"], sha256(&shot_bytes));

    // Exactly one notice, readable by a mail reader.
    let files: Vec<PathBuf> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].extension().unwrap(), "eml");
    let msg = parse_eml(&files[0]);
    assert_eq!(msg["defects"], json!([]));
    assert_eq!(one_header(&msg, "to"), "rpa-team@city.example");
    assert_eq!(
        one_header(&msg, "subject"),
        format!("[clerk] bot reports failed: run {run_id}")
    );
    let text = body_text(&msg);
    assert!(text.contains(&format!("run:      {run_id}")), "{text}");
    assert!(
        text.contains("step:     2 \"Open the reports\" (browser.click)"),
        "{text}"
    );
    assert!(
        text.contains("no element matches text 'Quarterly reports'"),
        "{text}"
    );
    assert!(text.contains(shot_path), "evidence listed in {text}");

    // Every artifact of the run is attached, byte-identical.
    let attachments: Vec<&Value> = leaves(&msg["body"])
        .into_iter()
        .filter(|p| p["disposition"] == "attachment")
        .collect();
    assert_eq!(attachments.len(), recorded.len(), "{msg:#}");
    for a in recorded {
        let path = a["path"].as_str().unwrap();
        let name = Path::new(path).file_name().unwrap().to_str().unwrap();
        let part = attachments
            .iter()
            .find(|p| p["filename"] == name)
            .unwrap_or_else(|| panic!("{name} is not attached: {msg:#}"));
        let bytes = std::fs::read(ws.path().join(path)).unwrap();
        assert_eq!(part["sha256"], sha256(&bytes), "{name}");
        assert_eq!(part["size"], bytes.len(), "{name}");
    }
    let png = attachments
        .iter()
        .find(|p| p["filename"].as_str().unwrap().ends_with(".png"))
        .unwrap();
    assert_eq!(png["content_type"], "image/png");

    // The audit ties the notice to the failed run, with what mail.send reports.
    let sent = of_kind(&all, "notify.sent");
    assert_eq!(sent.len(), 1, "{sent:?}");
    let sent = sent[0];
    assert_eq!(sent["run_id"], run_id);
    assert_eq!(sent["action"], "mail.send");
    assert_eq!(sent["target"], "rpa-team@city.example");
    let d = &sent["detail"];
    assert_eq!(d["reason"], "on_failure");
    assert_eq!(d["transport"], "file");
    assert_eq!(d["attempt"], 1);
    assert_eq!(d["message_id"], one_header(&msg, "message-id"));
    assert_eq!(d["accepted"], json!(["rpa-team@city.example"]));
    let hashed = d["attachments"].as_array().unwrap();
    assert!(
        hashed
            .iter()
            .any(|h| h["sha256"] == shot["sha256"] && h["size"] == shot_bytes.len()),
        "{d:#}"
    );
    assert!(of_kind(&all, "notify.failed").is_empty());
    let v = ws.clerk(&["audit", "verify"]);
    assert_eq!(v.code(), 0, "{}{}", v.stdout(), v.stderr());
}

const FAILING_PLAYBOOK: &str = r#"name: grumpy
steps:
  - name: Ask the portal
    fail: "the portal refused token {{ secrets.portal_token }}"
"#;

/// Over SMTP to a real server: the notice arrives with the failing step and
/// the error (the secret masked); a recipient the server keeps refusing
/// with 4xx is retried per mail.send's default policy, each attempt audited,
/// and ends in `notify.failed` quoting the server; a 5xx rejection fails at
/// once.
#[test]
fn failure_notice_goes_over_smtp_and_transient_refusals_are_retried() {
    let server = SmtpServer::start(&[
        "--tempfail",
        "busy@city.example",
        "--reject",
        "nobody@city.example",
    ]);
    let ws = Workspace::new(Backend::Sqlite);
    ws.write(
        "clerk.yaml",
        &format!(
            "mail:\n  transport: smtp\n  from: \"Clerk Bot <clerk@city.example>\"\n  smtp:\n    host: 127.0.0.1\n    port: {}\n    tls: none\n    timeout: 5s\n",
            server.port
        ),
    );
    ws.write("playbooks/grumpy.yaml", FAILING_PLAYBOOK);
    ws.write(
        "bots/grumpy.yaml",
        &bot(
            "grumpy",
            "grumpy.yaml",
            "notify: { on_failure: [ops@city.example, rpa-team@city.example] }\n",
        ),
    );
    ws.write(
        "bots/busy.yaml",
        &bot(
            "busy",
            "grumpy.yaml",
            "notify: { on_failure: [busy@city.example] }\n",
        ),
    );
    ws.write(
        "bots/lost.yaml",
        &bot(
            "lost",
            "grumpy.yaml",
            "notify: { on_failure: [nobody@city.example] }\n",
        ),
    );
    let secret = "tok-5f8a1c9e";
    let serve = Serve::start(&ws, &[("CLERK_SECRET_PORTAL_TOKEN", secret)]);
    let env = [("CLERK_SECRET_PORTAL_TOKEN", secret)];
    let r = ws.clerk_env(&["bots", "run", "grumpy", "--wait"], &env);
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    for name in ["busy", "lost"] {
        let r = ws.clerk_env(&["bots", "run", name, "--wait"], &env);
        assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    }
    wait_for(
        "the notice at the server and the refused ones given up",
        || {
            !server.messages().is_empty()
                && events(&ws)
                    .iter()
                    .filter(|e| e["kind"] == "notify.failed")
                    .count()
                    == 2
        },
    );
    let (code, log) = serve.stop();
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains(secret), "secret in the serve log");

    let grumpy_run = runs(&ws, "grumpy")[0]["id"].as_str().unwrap().to_string();
    let busy_run = runs(&ws, "busy")[0]["id"].as_str().unwrap().to_string();
    let lost_run = runs(&ws, "lost")[0]["id"].as_str().unwrap().to_string();

    let msgs = server.messages();
    assert_eq!(msgs.len(), 1, "only the deliverable notice arrives");
    let (meta, raw, msg) = (&msgs[0].meta, &msgs[0].raw, &msgs[0].parsed);
    assert_eq!(meta["mail_from"], "clerk@city.example");
    assert_eq!(
        meta["rcpt_tos"],
        json!(["ops@city.example", "rpa-team@city.example"])
    );
    assert_eq!(one_header(msg, "from"), "Clerk Bot <clerk@city.example>");
    assert_eq!(
        one_header(msg, "subject"),
        format!("[clerk] bot grumpy failed: run {grumpy_run}")
    );
    let text = body_text(msg);
    assert!(
        text.contains("step:     1 \"Ask the portal\" (fail)"),
        "{text}"
    );
    assert!(
        text.contains("error:    the portal refused token ***"),
        "{text}"
    );
    assert!(
        !String::from_utf8_lossy(raw).contains(secret),
        "secret in the mail"
    );

    let all = events(&ws);
    let sent = of_kind(&all, "notify.sent");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["run_id"], grumpy_run.as_str());
    assert_eq!(sent[0]["detail"]["transport"], "smtp");
    assert_eq!(
        sent[0]["detail"]["server"],
        format!("127.0.0.1:{}", server.port)
    );
    assert!(
        sent[0]["detail"]["reply"]
            .as_str()
            .unwrap()
            .starts_with("250"),
        "{}",
        sent[0]
    );
    assert_eq!(
        sent[0]["detail"]["message_id"],
        one_header(msg, "message-id")
    );

    // The refused notice (4xx): attempts 1 and 2 are retried, attempt 3 gives up.
    let retrying = of_kind(&all, "notify.retrying");
    assert!(
        retrying.iter().all(|e| e["run_id"] == busy_run.as_str()),
        "{retrying:?}"
    );
    let attempts: Vec<&Value> = retrying.iter().map(|e| &e["detail"]["attempt"]).collect();
    assert_eq!(attempts, [&json!(1), &json!(2)], "{retrying:?}");
    let failed = of_kind(&all, "notify.failed");
    assert_eq!(failed.len(), 2, "{failed:?}");
    let f = failed
        .iter()
        .find(|e| e["run_id"] == busy_run.as_str())
        .expect("notify.failed of the busy run");
    assert_eq!(f["target"], "busy@city.example");
    assert_eq!(f["detail"]["attempt"], 3);
    let error = f["error"].as_str().unwrap();
    assert!(error.contains("451"), "{error}");
    assert!(error.contains("busy@city.example"), "{error}");
    // The rejected one (5xx): no retry, the server's reply quoted.
    let f = failed
        .iter()
        .find(|e| e["run_id"] == lost_run.as_str())
        .expect("notify.failed of the lost run");
    assert_eq!(f["detail"]["attempt"], 1);
    let error = f["error"].as_str().unwrap();
    assert!(
        error.contains("550") && error.contains("Recipient address rejected"),
        "{error}"
    );
    for e in retrying.iter().chain(&failed).chain(&sent) {
        assert!(!e.to_string().contains(secret), "secret in {e}");
    }
}
