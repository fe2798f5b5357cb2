//! Checkpoint sinks against real servers: `audit.http` POSTs each checkpoint
//! to a real HTTP server on loopback (axum, in this test process), retries,
//! and audits a delivery that failed without holding up the run for long;
//! `audit.smtp` mails the checkpoints as a digest to a real SMTP server
//! (Python's aiosmtpd). What the servers received verifies with `clerk audit
//! verify --checkpoints`, and catches a truncated chain.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::smtp::{SmtpServer, python};
use common::{Backend, Workspace};
use serde_json::Value;

const PLAYBOOK: &str = "name: tiny\nsteps:\n  - log: hello\n  - set: { x: 1 }\n";

#[derive(Default)]
struct Received {
    bodies: Vec<String>,
    auth: Vec<Option<String>>,
    /// Answer 503 to this many requests first.
    fail_first: usize,
    seen: usize,
}

type Shared = Arc<Mutex<Received>>;

async fn receive(State(r): State<Shared>, headers: HeaderMap, body: String) -> StatusCode {
    let mut r = r.lock().unwrap();
    r.seen += 1;
    if r.seen <= r.fail_first {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    r.auth.push(
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    );
    r.bodies.push(body);
    StatusCode::CREATED
}

/// A real HTTP server on a free loopback port, in a runtime of its own.
struct HttpServer {
    port: u16,
    received: Shared,
    _rt: tokio::runtime::Runtime,
}

impl HttpServer {
    fn start(fail_first: usize) -> HttpServer {
        Self::start_on(0, fail_first)
    }

    fn start_on(port: u16, fail_first: usize) -> HttpServer {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let received: Shared = Arc::new(Mutex::new(Received {
            fail_first,
            ..Default::default()
        }));
        let app = Router::new()
            .route("/checkpoints", post(receive))
            .with_state(received.clone());
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        rt.spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        HttpServer {
            port,
            received,
            _rt: rt,
        }
    }

    fn bodies(&self) -> Vec<String> {
        self.received.lock().unwrap().bodies.clone()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn events_of_kind(ws: &Workspace, kind: &str) -> Vec<Value> {
    ws.clerk(&["audit", "export", "--out", "export.jsonl"]).ok();
    ws.read("export.jsonl")
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == kind)
        .collect()
}

/// Writes what a sink received as a checkpoint file and verifies the store
/// against it.
fn verify_against(ws: &Workspace, lines: &[String]) -> common::Run {
    let mut text = lines.join("\n");
    text.push('\n');
    ws.write("received.jsonl", &text);
    ws.clerk(&["audit", "verify", "--checkpoints", "received.jsonl"])
}

#[test]
fn each_checkpoint_is_posted_and_what_was_received_verifies() {
    let server = HttpServer::start(1); // the first POST gets a 503: retried
    let ws = Workspace::new(Backend::Sqlite);
    ws.write("playbooks/tiny.yaml", PLAYBOOK);
    ws.write(
        "clerk.yaml",
        &format!(
            "audit:\n  http:\n    url: http://127.0.0.1:{}/checkpoints\n    timeout: 5s\n    attempts: 3\n    token_secret: audit_token\n",
            server.port
        ),
    );
    ws.clerk(&["audit", "keygen"]).ok();
    for _ in 0..3 {
        ws.clerk_env(
            &["run", "playbooks/tiny.yaml"],
            &[("CLERK_SECRET_AUDIT_TOKEN", "tok-93c1e7")],
        )
        .ok();
    }
    let bodies = server.bodies();
    assert_eq!(bodies.len(), 3, "one POST per run's checkpoint: {bodies:?}");
    // Exactly the lines of the local file, in order.
    let file: Vec<String> = ws
        .read(".clerk/checkpoints.jsonl")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(bodies, file);
    for b in &bodies {
        let v: Value = serde_json::from_str(b).unwrap();
        assert_eq!(v["format"], "clerk-checkpoint/1");
        assert!(v["signature"].is_string(), "{v}");
    }
    let auth = server.received.lock().unwrap().auth.clone();
    assert!(
        auth.iter()
            .all(|a| a.as_deref() == Some("Bearer tok-93c1e7")),
        "{auth:?}"
    );
    // The token is nowhere in the store or the file.
    let dump = std::fs::read(ws.path().join(".clerk/clerk.db")).unwrap();
    assert!(!String::from_utf8_lossy(&dump).contains("tok-93c1e7"));

    let r = verify_against(&ws, &bodies);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(r.stdout().contains("3 checkpoints"), "{}", r.stdout());

    // What the auditors received catches a truncated tail.
    let db = ws.path().join(".clerk/clerk.db");
    let out = Command::new("sqlite3")
        .arg(&db)
        .arg("DELETE FROM audit_events WHERE id > (SELECT MAX(id) - 3 FROM audit_events)")
        .output()
        .unwrap();
    assert!(out.status.success());
    let r = verify_against(&ws, &bodies);
    assert_eq!(r.code(), 1, "{}", r.stdout());
    assert!(
        r.stdout().contains("is beyond the end of the chain"),
        "{}",
        r.stdout()
    );
}

#[test]
fn an_unreachable_endpoint_is_audited_and_caught_up_later() {
    let port = free_port(); // nothing listens here yet
    let ws = Workspace::new(Backend::Sqlite);
    ws.write("playbooks/tiny.yaml", PLAYBOOK);
    ws.write(
        "clerk.yaml",
        &format!(
            "audit:\n  http: {{ url: \"http://127.0.0.1:{port}/checkpoints?token=qs-secret-55\", timeout: 1s, attempts: 2 }}\n"
        ),
    );
    ws.clerk(&["audit", "keygen"]).ok();
    let t = Instant::now();
    ws.clerk(&["run", "playbooks/tiny.yaml"]).ok();
    ws.clerk(&["run", "playbooks/tiny.yaml"]).ok();
    // Not a timing assertion on speed: the bound is the documented one
    // (attempts × timeout + backoff per run), far below a stuck run.
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "the runs waited {:?} for a dead sink",
        t.elapsed()
    );
    let failed = events_of_kind(&ws, "audit.sink_failed");
    assert_eq!(failed.len(), 2, "one audited failure per delivery");
    assert_eq!(failed[0]["outcome"], "failed");
    assert_eq!(failed[0]["target"], "http");
    let err = failed[1]["error"].as_str().unwrap();
    assert!(err.contains("failed after 2 attempt(s)"), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{port}/checkpoints")),
        "{err}"
    );
    assert!(
        !err.contains("qs-secret-55"),
        "the query string is not shown: {err}"
    );
    assert_eq!(failed[1]["detail"]["pending"], 2);

    // The endpoint comes up: the next delivery sends everything pending, in
    // order (the manual checkpoint delivers too).
    let server = HttpServer::start_on(port, 0);
    let r = ws.clerk(&["audit", "checkpoint"]).ok();
    assert!(
        r.stderr().contains("http: 3 checkpoint(s) sent, 0 pending"),
        "{}",
        r.stderr()
    );
    let bodies = server.bodies();
    let file: Vec<String> = ws
        .read(".clerk/checkpoints.jsonl")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(bodies, file);
    let r = verify_against(&ws, &bodies);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    // Nothing is sent twice.
    let r = ws.clerk(&["audit", "checkpoint"]).ok();
    assert!(
        r.stderr().contains("http: 0 checkpoint(s) sent"),
        "{}",
        r.stderr()
    );
    assert_eq!(server.bodies().len(), 3);
}

/// The `checkpoints-….jsonl` attachment of a received mail, decoded by
/// Python's `email` package.
fn attachment_of(raw: &[u8]) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let eml = dir.path().join("m.eml");
    std::fs::write(&eml, raw).unwrap();
    let script = r#"
import email, email.policy, json, sys
msg = email.message_from_bytes(open(sys.argv[1], 'rb').read(), policy=email.policy.default)
for part in msg.iter_attachments():
    print(json.dumps({"name": part.get_filename(), "text": part.get_payload(decode=True).decode()}))
"#;
    let out = Command::new(python())
        .args(["-c", script])
        .arg(&eml)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["name"].as_str().unwrap().to_string(),
        v["text"].as_str().unwrap().to_string(),
    )
}

#[test]
fn checkpoints_are_mailed_to_the_auditors_as_a_digest() {
    let smtp = SmtpServer::start(&[]);
    let ws = Workspace::new(Backend::Sqlite);
    ws.write("playbooks/tiny.yaml", PLAYBOOK);
    let yaml = |every: &str| {
        format!(
            "mail:\n  from: clerk@city.example\n  smtp: {{ host: 127.0.0.1, port: {}, tls: none }}\naudit:\n  smtp: {{ to: [auditors@city.example], every: {every} }}\n",
            smtp.port
        )
    };
    ws.write("clerk.yaml", &yaml("24h"));
    ws.clerk(&["audit", "keygen"]).ok();
    for _ in 0..3 {
        ws.clerk(&["run", "playbooks/tiny.yaml"]).ok();
    }
    // A daily digest: the first checkpoint goes at once (nothing was ever
    // mailed), the next two wait for the day to pass.
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "one mail within the day");
    assert_eq!(
        mails[0].meta["rcpt_tos"][0], "auditors@city.example",
        "{}",
        mails[0].meta
    );
    let (name, first) = attachment_of(&mails[0].raw);
    let head: Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    assert_eq!(name, format!("checkpoints-{0}-{0}.jsonl", head["head_id"]));
    assert_eq!(first.lines().count(), 1);

    // Every checkpoint at once (`every: 0s`): the next delivery (here the
    // manual checkpoint's; the head already is a checkpoint, so it adds
    // none) mails the two pending ones.
    ws.write("clerk.yaml", &yaml("0s"));
    ws.clerk(&["audit", "checkpoint"]).ok();
    let mails = smtp.messages();
    assert_eq!(mails.len(), 2);
    let (_, rest) = attachment_of(&mails[1].raw);
    assert_eq!(rest.lines().count(), 2, "{rest}");
    let text = common::smtp::leaves(&mails[1].parsed["body"])
        .iter()
        .filter_map(|p| p["text"].as_str())
        .collect::<String>();
    assert!(text.contains("2 checkpoint(s)"), "{text}");
    assert!(text.contains("clerk audit verify --checkpoints"), "{text}");

    // Together they are the local file, and they verify the store.
    let all: Vec<String> = first
        .lines()
        .chain(rest.lines())
        .map(str::to_string)
        .collect();
    let file: Vec<String> = ws
        .read(".clerk/checkpoints.jsonl")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(all, file);
    let r = verify_against(&ws, &all);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(r.stdout().contains("3 checkpoints"), "{}", r.stdout());
}

#[test]
fn a_mail_server_that_is_down_is_audited() {
    let port = free_port();
    let ws = Workspace::new(Backend::Sqlite);
    ws.write("playbooks/tiny.yaml", PLAYBOOK);
    ws.write(
        "clerk.yaml",
        &format!(
            "mail:\n  from: clerk@city.example\n  smtp: {{ host: 127.0.0.1, port: {port}, tls: none, timeout: 2s }}\naudit:\n  smtp: {{ to: [auditors@city.example], every: 0s }}\n"
        ),
    );
    ws.clerk(&["run", "playbooks/tiny.yaml"]).ok();
    let failed = events_of_kind(&ws, "audit.sink_failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["target"], "smtp");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{port}")),
        "{}",
        failed[0]
    );
}
