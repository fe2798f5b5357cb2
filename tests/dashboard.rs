//! The web dashboard of `clerk serve --http`, driven with real headless
//! Chromium (fantoccini): an operator pauses and resumes a bot and finds a
//! request of a flagship run by its key; an auditor sees no pause button and
//! a forged POST is refused (403 + audit event); wrong passwords are rate
//! limited. Also `/metrics` (parsed by Python's prometheus_client) and
//! `/healthz` turning unhealthy when the PostgreSQL store is made unreachable.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::chrome::Chrome;
use common::{Backend, Workspace, flagship, query};
use fantoccini::Locator;
use serde_json::{Value, json};

const OPERATOR_PW: &str = "op-pass-5f2a9c";
const AUDITOR_PW: &str = "au-pass-8e1b4d";
const BOT: &str = "parking-permits-nightly";

/// A `clerk serve --http 127.0.0.1:0`, stopped (SIGTERM) when dropped.
struct Serve {
    child: Child,
    url: String,
    log: Arc<Mutex<String>>,
}

impl Serve {
    fn start(ws: &Workspace, extra: &[&str]) -> Serve {
        let mut child = ws
            .cmd()
            .args(["serve", "--http", "127.0.0.1:0", "--grace", "5s"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start clerk serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Text (`url=http://…/`) and JSON (`"url":"http://…/"`) logs.
                if line.contains("dashboard listening")
                    && let Some(i) = line.find("http://")
                    && let Some(t) = tx.take()
                {
                    let url: String = line[i..]
                        .chars()
                        .take_while(|c| !c.is_whitespace() && *c != '"')
                        .collect();
                    let _ = t.send(url.trim_end_matches('/').to_string());
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(u) => u,
            Err(_) => {
                let _ = child.kill();
                panic!("the dashboard did not start:\n{}", log.lock().unwrap());
            }
        };
        Serve { child, url, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        if pid > 1 {
            // SAFETY: sends SIGTERM to this one child process.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET: (status, body).
fn http_get(base: &str, path: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the dashboard");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    // Chunked bodies: good enough to strip the chunk sizes for our checks.
    (status, dechunk(&body))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, tail)) = rest.split_once("\r\n") else {
            return body.to_string();
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_string();
        };
        if n == 0 {
            return out;
        }
        if tail.len() < n {
            return body.to_string();
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
}

fn add_user(ws: &Workspace, name: &str, role: &str, pw: &str) {
    let mut c = ws.cmd();
    c.args(["users", "add", name, "--role", role, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("clerk users add");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{pw}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn artifacts_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Copies a screenshot into docs/ when asked (CLERK_UPDATE_DOCS=1), so the
/// README's pictures are what the test saw.
fn publish(shot: &std::path::Path, name: &str) {
    if std::env::var("CLERK_UPDATE_DOCS").as_deref() == Ok("1") {
        let dest = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("docs/img")
            .join(name);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(shot, dest).unwrap();
    }
}

async fn sign_in(chrome: &Chrome, base: &str, user: &str, pw: &str) {
    let c = &chrome.client;
    c.goto(&format!("{base}/login")).await.unwrap();
    c.find(Locator::Id("user"))
        .await
        .unwrap()
        .send_keys(user)
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(pw)
        .await
        .unwrap();
    c.find(Locator::Id("sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn sign_out(chrome: &Chrome) {
    chrome
        .client
        .find(Locator::Id("logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    chrome
        .wait_for(
            "return location.pathname === '/login'",
            "the sign-in page after sign-out",
        )
        .await;
}

fn events(ws: &Workspace, kind: &str) -> Vec<String> {
    query(
        ws,
        &format!(
            "SELECT actor || '|' || COALESCE(target,'') || '|' || COALESCE(outcome,'') FROM audit_events WHERE kind = '{kind}' ORDER BY id"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_and_auditor_in_chromium() {
    let portal = flagship::portal();
    let ws = flagship::workspace(Backend::Sqlite);
    let run = flagship::run(&ws, &portal);
    let run_id = run["id"].as_str().unwrap().to_string();
    add_user(&ws, "olivia", "operator", OPERATOR_PW);
    add_user(&ws, "arthur", "auditor", AUDITOR_PW);
    let serve = Serve::start(&ws, &[]);
    let base = serve.url.clone();
    let chrome = Chrome::start().await;
    let c = &chrome.client;

    // Not signed in: every page leads to the sign-in form.
    c.goto(&format!("{base}/runs")).await.unwrap();
    chrome
        .wait_for(
            "return location.pathname === '/login'",
            "the redirect to /login",
        )
        .await;

    // The operator signs in and lands on the runs page.
    sign_in(&chrome, &base, "olivia", OPERATOR_PW).await;
    chrome
        .wait_for("return !!document.getElementById('runs')", "the runs page")
        .await;
    let who = chrome
        .js("return document.getElementById('whoami').textContent")
        .await;
    assert_eq!(who, "olivia (operator)");
    let listed = chrome
        .js("return [...document.querySelectorAll('#runs tr[data-run]')].map(r => r.dataset.run)")
        .await;
    assert_eq!(listed, json!([run_id]));
    // The session cookie is not readable by script (HttpOnly).
    assert_eq!(chrome.js("return document.cookie").await, "");
    let runs_png = artifacts_dir().join("runs.png");
    chrome.screenshot(&runs_png).await;
    publish(&runs_png, "dashboard-runs.png");

    // Pause the bot, see it paused, resume it.
    c.goto(&format!("{base}/bots")).await.unwrap();
    let pause = format!("tr[data-bot='{BOT}'] button.pause");
    c.find(Locator::Css(&pause))
        .await
        .expect("a pause button for the operator")
        .click()
        .await
        .unwrap();
    chrome
        .wait_for(&format!("const s = document.querySelector(\"tr[data-bot='{BOT}'] .bot-state\"); return !!s && s.textContent.trim() === 'paused'"), "the bot shown paused")
        .await;
    let listed = ws.clerk(&["bots", "list", "--json"]).ok().json();
    let bot = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == BOT)
        .unwrap()
        .clone();
    assert_eq!(bot["paused"], true, "{bot}");
    assert_eq!(events(&ws, "admin.pause"), vec![format!("olivia|{BOT}|ok")]);
    c.find(Locator::Css(&format!("tr[data-bot='{BOT}'] button.resume")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    chrome
        .wait_for(&format!("const s = document.querySelector(\"tr[data-bot='{BOT}'] .bot-state\"); return !!s && s.textContent.trim() === 'enabled'"), "the bot shown enabled")
        .await;
    assert_eq!(
        events(&ws, "admin.resume"),
        vec![format!("olivia|{BOT}|ok")]
    );
    let bots_png = artifacts_dir().join("bots.png");
    chrome.screenshot(&bots_png).await;
    publish(&bots_png, "dashboard-bots.png");

    // Find request PR-2026-0012 by its key, open its run: the typed values and the reference.
    c.goto(&format!("{base}/runs")).await.unwrap();
    c.find(Locator::Id("item-filter"))
        .await
        .unwrap()
        .send_keys("PR-2026-0012")
        .await
        .unwrap();
    c.find(Locator::Id("apply-filters"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    chrome
        .wait_for(
            "return location.search.includes('item=PR-2026-0012')",
            "the filtered runs",
        )
        .await;
    let listed = chrome
        .js("return [...document.querySelectorAll('#runs tr[data-run]')].map(r => r.dataset.run)")
        .await;
    assert_eq!(listed, json!([run_id]));
    c.find(Locator::Css(&format!("tr[data-run='{run_id}'] a")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    chrome
        .wait_for(
            "return !!document.getElementById('item-PR-2026-0012')",
            "the run page",
        )
        .await;
    let case = portal
        .cases()
        .into_iter()
        .find(|c| c["request_id"] == "PR-2026-0012")
        .unwrap();
    let item = chrome
        .js("const b = document.getElementById('item-PR-2026-0012'); \
             return { open: b.querySelector('details').open, state: b.dataset.state, \
             ref: b.querySelector('.kv[data-field=reference]').textContent, \
             typed: [...b.querySelectorAll('td.typed')].map(td => td.textContent).filter(t => t) }")
        .await;
    assert_eq!(
        item["open"], true,
        "the item named in the link is opened: {item}"
    );
    assert_eq!(item["state"], "done");
    assert!(
        item["ref"]
            .as_str()
            .unwrap()
            .contains(case["reference"].as_str().unwrap()),
        "{item}"
    );
    let typed: Vec<&str> = item["typed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for field in [
        "applicant_name",
        "street_address",
        "postcode",
        "vehicle_plate",
        "email",
    ] {
        assert!(
            typed.contains(&case[field].as_str().unwrap()),
            "{field} not among {typed:?}"
        );
    }
    chrome
        .js("document.getElementById('item-PR-2026-0012').scrollIntoView(); window.scrollBy(0, -60)")
        .await;
    let run_png = artifacts_dir().join("run.png");
    chrome.screenshot(&run_png).await;
    publish(&run_png, "dashboard-run.png");
    // Items by state; a rejected request is retried: back to pending in the ledger.
    c.goto(&format!("{base}/items?state=business_exception"))
        .await
        .unwrap();
    chrome
        .wait_for(
            "return !!document.getElementById('items')",
            "the items page",
        )
        .await;
    let keys = chrome.js("return [...document.querySelectorAll('#items tr[data-key]')].map(r => r.dataset.key).sort()").await;
    let rejected: Vec<&str> = flagship::REJECTIONS.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, json!(rejected));
    c.find(Locator::Css("tr[data-key='PR-2026-0007'] button.retry"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    chrome
        .wait_for("const t = document.getElementById('message-title'); return !!t && t.textContent === 'Item requeued'", "the requeue message")
        .await;
    assert_eq!(
        query(
            &ws,
            "SELECT state FROM work_items WHERE item_key = 'PR-2026-0007'"
        ),
        vec!["pending"]
    );
    assert_eq!(
        query(
            &ws,
            "SELECT actor FROM audit_events WHERE kind = 'admin.item_requeued' AND item_key = 'PR-2026-0007'"
        ),
        vec!["olivia"]
    );
    sign_out(&chrome).await;
    assert_eq!(
        events(&ws, "web.logout"),
        vec!["olivia|olivia|ok".to_string()]
    );

    // The auditor: reads everything, has no pause button; a forged POST gets 403 and is audited.
    sign_in(&chrome, &base, "arthur", AUDITOR_PW).await;
    chrome
        .wait_for("return !!document.getElementById('runs')", "the runs page")
        .await;
    c.goto(&format!("{base}/bots")).await.unwrap();
    chrome
        .wait_for("return !!document.getElementById('bots')", "the bots page")
        .await;
    assert_eq!(chrome.js("return document.querySelectorAll('button.pause, button.resume, button.run-now').length").await, 0);
    let status = chrome
        .client
        .execute_async(
            &format!(
                "const done = arguments[arguments.length - 1]; \
                 const csrf = document.querySelector('input[name=csrf]').value; \
                 fetch('/bots/{BOT}/pause', {{ method: 'POST', body: new URLSearchParams({{ csrf }}) }}).then(r => done(r.status))"
            ),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, 403);
    let denied = query(
        &ws,
        "SELECT actor, target, outcome FROM audit_events WHERE kind = 'web.denied'",
    );
    assert_eq!(denied, vec![format!("arthur|pause bot {BOT}|denied")]);
    let listed = ws.clerk(&["bots", "list", "--json"]).ok().json();
    assert_eq!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == BOT)
            .unwrap()["paused"],
        false
    );
    // A POST without the CSRF token is refused too, even for an operator's action.
    let status = chrome
        .client
        .execute_async(
            &format!("const done = arguments[arguments.length - 1]; fetch('/bots/{BOT}/resume', {{ method: 'POST', body: new URLSearchParams({{}}) }}).then(r => done(r.status))"),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, 403);
    sign_out(&chrome).await;

    // Five wrong passwords, then even the right one is refused for a while.
    for i in 0..5 {
        sign_in(&chrome, &base, "olivia", &format!("wrong-{i}")).await;
        chrome
            .wait_for("const e = document.getElementById('login-error'); return !!e && e.textContent.includes('Wrong user name or password')", "the wrong-password message")
            .await;
    }
    sign_in(&chrome, &base, "olivia", OPERATOR_PW).await;
    chrome
        .wait_for("const e = document.getElementById('login-error'); return !!e && e.textContent.includes('Too many failed sign-ins')", "the rate-limit message")
        .await;
    assert_eq!(
        query(
            &ws,
            "SELECT COUNT(*) FROM audit_events WHERE kind = 'web.login' AND outcome = 'failed'"
        ),
        vec!["5"]
    );
    assert_eq!(
        query(
            &ws,
            "SELECT COUNT(*) FROM audit_events WHERE kind = 'web.login' AND outcome = 'rate_limited'"
        ),
        vec!["1"]
    );
    // No password or hash in the log or the audit trail.
    let dump = common::dump_store(&ws);
    for secret in [OPERATOR_PW, AUDITOR_PW] {
        assert!(!dump.contains(secret));
        assert!(!serve.log().contains(secret));
    }
    chrome.client.clone().close().await.ok();
}

#[test]
fn the_dashboard_refuses_to_start_without_users() {
    let ws = flagship::workspace(Backend::Sqlite);
    let r = ws.clerk(&["serve", "--http", "127.0.0.1:0"]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(
        r.stderr().contains("clerk users add NAME --role admin"),
        "{}",
        r.stderr()
    );
    assert!(r.stderr().contains("no default password"), "{}", r.stderr());
}

/// `/metrics` parses with Python's prometheus_client (both the Prometheus
/// text and the OpenMetrics parser); `/healthz` is healthy, goes unhealthy
/// when the PostgreSQL database refuses connections (its sessions ended and
/// new ones not allowed: the store is down for this workspace only), and
/// recovers when it comes back.
#[test]
fn metrics_parse_and_health_follows_the_store() {
    let portal = flagship::portal();
    let ws = flagship::workspace(Backend::Postgres);
    flagship::run(&ws, &portal);
    add_user(&ws, "ada", "admin", "ad-pass-3c7e1f");
    let serve = Serve::start(&ws, &["--log-format", "json"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        let (code, body) = http_get(&serve.url, "/healthz");
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if code == 200 && v["scheduler"]["role"] == "scheduler" {
            break v;
        }
        assert!(Instant::now() < deadline, "never healthy: {code} {body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(health["store"]["ok"], true);

    let (code, text) = http_get(&serve.url, "/metrics");
    assert_eq!(code, 200);
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
text = sys.stdin.read()
list(om(text))  # strict OpenMetrics parse: raises on any syntax error
out = {}
for f in text_string_to_metric_families(text):
    for s in f.samples:
        out[s.name + json.dumps(s.labels, sort_keys=True)] = s.value
    out["type:" + f.name] = f.type
print(json.dumps(out))
"#;
    let mut py = Command::new(common::smtp::python())
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    py.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client cannot parse /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        m["clerk_runs{\"status\": \"succeeded_with_exceptions\"}"], 1.0,
        "{m}"
    );
    assert_eq!(m["clerk_work_items{\"state\": \"done\"}"], 36.0, "{m}");
    assert_eq!(
        m["clerk_work_items{\"state\": \"business_exception\"}"], 4.0,
        "{m}"
    );
    assert_eq!(m["clerk_queue_depth{}"], 0.0, "{m}");
    assert_eq!(m["clerk_store_up{}"], 1.0, "{m}");
    assert_eq!(m["clerk_browser_sessions_open{}"], 0.0, "{m}");
    let events: f64 = query(&ws, "SELECT MAX(id) FROM audit_events")[0]
        .parse()
        .unwrap();
    assert!(
        m["clerk_audit_events_total{}"].as_f64().unwrap() >= events - 5.0,
        "{m}"
    );
    assert_eq!(m["type:clerk_firing_lateness_seconds"], "histogram", "{m}");
    assert_eq!(m["type:clerk_audit_events"], "counter", "{m}");

    // Stop the store for this workspace: no new connections, the open ones ended.
    let db = ws
        .db_url
        .as_ref()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let psql = |sql: &str| {
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
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    psql(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false"));
    psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    let down = loop {
        let (code, body) = http_get(&serve.url, "/healthz");
        if code == 503 {
            break serde_json::from_str::<Value>(&body).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "still healthy with the store down: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(down["status"], "unhealthy");
    assert_eq!(down["store"]["ok"], false);
    assert!(
        down["problems"][0]
            .as_str()
            .unwrap()
            .contains("store unreachable"),
        "{down}"
    );
    let (_, text) = http_get(&serve.url, "/metrics");
    assert!(text.contains("clerk_store_up 0"), "{text}");

    // Back again.
    psql(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, body) = http_get(&serve.url, "/healthz");
        if code == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never healthy again: {body}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // The JSON log: one object per line, and the store trouble at WARN.
    let log = serve.log();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "dashboard listening"),
        "{log}"
    );
    assert!(lines.iter().any(|l| l["level"] == "WARN"), "{log}");
}

/// `clerk bots run --wait` with no `clerk serve` on the store says so after a
/// few seconds (exit 1) instead of waiting forever; the run stays queued.
#[test]
fn bots_run_wait_without_a_worker_says_so() {
    let ws = flagship::workspace(Backend::Sqlite);
    let started = Instant::now();
    let r = ws.clerk(&["bots", "run", BOT, "--wait"]);
    assert_eq!(r.code(), 1, "{}\n{}", r.stdout(), r.stderr());
    assert!(
        r.stderr()
            .contains("no `clerk serve` is running on this store"),
        "{}",
        r.stderr()
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(query(&ws, "SELECT status FROM runs"), vec!["queued"]);
}
