//! The workers registry and label-aware claims (issues 16 §3 and 17 §3),
//! against a real SQLite file AND the real PostgreSQL at 127.0.0.1:5432 (a
//! fresh database per test), plus two real `clerk serve` processes with
//! different `--labels` on one PostgreSQL store. No mocks; waits are
//! deadlines on observable conditions.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use clerk::audit::{self, NewEvent};
use clerk::store::workers::{LIVE_WITHIN, NewWorker};
use clerk::store::{ClaimScope, QueuedRun, SchedBatch, Store};
use serde_json::json;

// ---------------------------------------------------------------- harness

struct TestDb {
    store: Store,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            drop(DropDb(name));
        }
    }
}

async fn sqlite_db() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/clerk.db", dir.path().display());
    TestDb {
        store: Store::open(&url).await.unwrap(),
        _dir: Some(dir),
        pg_name: None,
    }
}

async fn pg_db() -> TestDb {
    let name = format!(
        "clerk_workers_{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    common::create_pg_database(&name);
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    TestDb {
        store: Store::open(&url).await.unwrap(),
        _dir: None,
        pg_name: Some(name),
    }
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = super::sqlite_db().await;
                super::$name(db.store.clone()).await;
                db.store.close().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let db = super::pg_db().await;
                super::$name(db.store.clone()).await;
                db.store.close().await;
            }
        }
    )*};
}

both_backends!(
    orphaned_rows_queued_ahead_do_not_block_claims,
    a_batch_claim_is_one_transaction_and_keeps_overlap,
    registry_heartbeat_liveness_by_database_clock,
);

fn run(bot: &str, due_secs_ago: i64, scheduled: bool, overlap: &str) -> QueuedRun {
    let at = Utc::now() - chrono::Duration::seconds(due_secs_ago);
    QueuedRun {
        id: ulid::Ulid::new().to_string(),
        bot: bot.into(),
        playbook: "playbooks/p.yaml".into(),
        inputs: json!({}),
        scheduled_for: scheduled.then_some(at),
        due_at: at,
        overlap: overlap.into(),
        actor: bot.into(),
        attempt: 1,
        retry_of: None,
        event: NewEvent::new("run.queued", bot),
    }
}

async fn enqueue(store: &Store, runs: Vec<QueuedRun>) -> Vec<String> {
    let batch = SchedBatch {
        runs,
        ..Default::default()
    };
    store.write_sched_batch(&batch).await.unwrap()
}

fn worker(id: &str, labels: &[&str]) -> NewWorker {
    NewWorker {
        instance_id: id.into(),
        host: "test-host".into(),
        pid: std::process::id(),
        version: "test".into(),
        labels: labels.iter().map(|s| s.to_string()).collect(),
        runs_worker: format!("runs-{id}"),
    }
}

async fn status_of(store: &Store, id: &str) -> String {
    store.get_run(id).await.unwrap().unwrap().status
}

// ---------------------------------------------------------------- store

/// 100 rows no worker can run (a renamed bot's leftovers) and 40 manual runs
/// of a busy `overlap: skip` bot are queued ahead of one runnable run: the
/// claim still finds it, and leaves the others alone. (Before claims were
/// filtered in SQL, the 32 oldest rows were read and skipped in Rust, and
/// this claim came back empty.)
async fn orphaned_rows_queued_ahead_do_not_block_claims(store: Store) {
    let me = "W1";
    store.register_worker(&worker(me, &[])).await.unwrap();
    store
        .set_worker_bots(me, &["known".into(), "busy".into()])
        .await
        .unwrap();
    // The busy bot has a running run (claimed first).
    let busy_first = enqueue(&store, vec![run("busy", 600, false, "skip")]).await;
    let c = store
        .claim_due("runs-W1", ClaimScope::Registered(me))
        .await
        .unwrap();
    assert_eq!(c.run.map(|r| r.id), busy_first.first().cloned());

    let mut ahead = Vec::new();
    for i in 0..100 {
        ahead.push(run("renamed-bot", 500 - i, true, "skip"));
    }
    for i in 0..40 {
        ahead.push(run("busy", 300 - i, false, "skip"));
    }
    let ahead_ids = enqueue(&store, ahead).await;
    assert_eq!(ahead_ids.len(), 140);
    let runnable = enqueue(&store, vec![run("known", 10, true, "skip")]).await;

    let c = store
        .claim_due("runs-W1", ClaimScope::Registered(me))
        .await
        .unwrap();
    let got = c
        .run
        .expect("the runnable run is claimed despite 140 rows ahead");
    assert_eq!(got.id, runnable[0]);
    assert_eq!(got.worker.as_deref(), Some("runs-W1"));
    assert!(c.skipped.is_empty(), "{:?}", c.skipped);
    // Nothing else to do: the rest stays queued, untouched.
    let c = store
        .claim_due("runs-W1", ClaimScope::Registered(me))
        .await
        .unwrap();
    assert!(c.run.is_none() && c.skipped.is_empty());
    for id in &ahead_ids {
        assert_eq!(status_of(&store, id).await, "queued");
    }
    // A worker that knows the renamed bot takes its rows.
    store.register_worker(&worker("W2", &[])).await.unwrap();
    store
        .set_worker_bots("W2", &["renamed-bot".into()])
        .await
        .unwrap();
    let c = store
        .claim_due("runs-W2", ClaimScope::Registered("W2"))
        .await
        .unwrap();
    assert_eq!(c.run.map(|r| r.id), Some(ahead_ids[0].clone()));
    assert!(audit::verify(&store).await.unwrap().is_ok());
}

/// Several runs claimed in one call: each `running` with its `run.started`
/// event; a `queue` bot gets one at a time; `skip` firings of a running bot
/// are skipped with their event.
async fn a_batch_claim_is_one_transaction_and_keeps_overlap(store: Store) {
    store.register_worker(&worker("B", &[])).await.unwrap();
    store
        .set_worker_bots("B", &["q".into(), "a".into(), "s".into()])
        .await
        .unwrap();
    let q = enqueue(
        &store,
        vec![
            run("q", 50, true, "queue"),
            run("q", 49, true, "queue"),
            run("a", 48, true, "allow"),
            run("a", 47, true, "allow"),
            run("s", 46, true, "skip"),
            run("s", 45, true, "skip"),
        ],
    )
    .await;
    let b = store
        .claim_due_batch("runs-B", ClaimScope::Registered("B"), 10, None)
        .await
        .unwrap();
    let got: Vec<String> = b.runs.iter().map(|r| r.id.clone()).collect();
    assert_eq!(
        got,
        vec![q[0].clone(), q[2].clone(), q[3].clone(), q[4].clone()]
    );
    assert_eq!(b.skipped, vec![(q[5].clone(), "s".to_string())]);
    assert_eq!(status_of(&store, &q[1]).await, "queued", "queue waits");
    for id in &got {
        let ev = store.events(Some(id), 0, 10).await.unwrap();
        assert_eq!(ev.last().unwrap().kind, "run.started", "{id}");
    }
    // The queued one waits while its bot runs.
    let b = store
        .claim_due_batch("runs-B", ClaimScope::Registered("B"), 10, None)
        .await
        .unwrap();
    assert!(b.runs.is_empty() && b.skipped.is_empty());
    assert!(audit::verify(&store).await.unwrap().is_ok());
}

/// Register, heartbeat, stop; a worker whose heartbeat is old by the
/// database clock is not live and its running runs are reported.
async fn registry_heartbeat_liveness_by_database_clock(store: Store) {
    store
        .register_worker(&worker("LIVE", &["vpn", "grid-eu"]))
        .await
        .unwrap();
    store.register_worker(&worker("GONE", &[])).await.unwrap();
    store.set_worker_bots("GONE", &["g".into()]).await.unwrap();
    let ids = enqueue(&store, vec![run("g", 5, true, "skip")]).await;
    let c = store
        .claim_due("runs-GONE", ClaimScope::Registered("GONE"))
        .await
        .unwrap();
    assert!(c.run.is_some());
    assert!(store.worker_heartbeat("LIVE").await.unwrap());
    assert!(store.worker_heartbeat("GONE").await.unwrap());
    let all = store.workers(LIVE_WITHIN).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|w| w.live), "{all:?}");
    let gone = all.iter().find(|w| w.instance_id == "GONE").unwrap();
    assert_eq!(gone.runs_in_flight, 1);
    assert!(
        store
            .runs_of_dead_workers(LIVE_WITHIN)
            .await
            .unwrap()
            .is_empty()
    );

    // Its last heartbeat 30 s ago, by the database's own clock.
    let back = match store.backend() {
        clerk::store::Backend::Postgres => {
            "UPDATE workers SET heartbeat_at = to_char((clock_timestamp() - interval '30 seconds') \
             AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') WHERE instance_id = 'GONE'"
        }
        clerk::store::Backend::Sqlite => {
            "UPDATE workers SET heartbeat_at = strftime('%Y-%m-%dT%H:%M:%f', 'now', '-30 seconds') \
             || '000Z' WHERE instance_id = 'GONE'"
        }
    };
    sqlx::query(back).execute(store.pool()).await.unwrap();
    let all = store.workers(LIVE_WITHIN).await.unwrap();
    let gone = all.iter().find(|w| w.instance_id == "GONE").unwrap();
    assert!(!gone.live);
    assert!(gone.heartbeat_age_s >= 29.0, "{gone:?}");
    let live = store.live_workers(LIVE_WITHIN).await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].labels, vec!["grid-eu".to_string(), "vpn".into()]);
    let dead = store.runs_of_dead_workers(LIVE_WITHIN).await.unwrap();
    assert_eq!(dead.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), ids);

    // A clean stop: not live at once, stopped_at set, no bots offered.
    store.stop_worker("LIVE").await.unwrap();
    assert!(!store.worker_heartbeat("LIVE").await.unwrap());
    assert!(store.live_workers(LIVE_WITHIN).await.unwrap().is_empty());
    let all = store.workers(LIVE_WITHIN).await.unwrap();
    let stopped = all.iter().find(|w| w.instance_id == "LIVE").unwrap();
    assert!(stopped.stopped_at.is_some());
    // Registering again (a restart with the same id) makes it live again.
    store
        .register_worker(&worker("LIVE", &["vpn"]))
        .await
        .unwrap();
    assert_eq!(store.live_workers(LIVE_WITHIN).await.unwrap().len(), 1);
    let db_now = store.db_now().await.unwrap();
    assert!((db_now - Utc::now()).num_seconds().abs() < 60);
}

// ---------------------------------------------------------------- serve

const NOOP: &str = "name: noop\nsteps:\n  - log: \"ran\"\n";

/// A `clerk serve` in its own workspace folder on a shared store.
struct Serve {
    child: Option<Child>,
    log: std::path::PathBuf,
    dir: std::path::PathBuf,
    db: String,
}

impl Serve {
    fn start(dir: &std::path::Path, db: &str, args: &[&str]) -> Serve {
        let log = dir.join("serve.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_clerk"))
            .arg("--workspace")
            .arg(dir)
            .args(["--db", db, "serve"])
            .args(args)
            .current_dir(dir)
            .env_remove("CLERK_DATABASE_URL")
            .env("RUST_LOG", "clerk=info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start clerk serve");
        Serve {
            child: Some(child),
            log,
            dir: dir.to_path_buf(),
            db: db.into(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn clerk(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_clerk"))
            .arg("--workspace")
            .arg(&self.dir)
            .args(["--db", &self.db])
            .args(args)
            .env_remove("CLERK_DATABASE_URL")
            .output()
            .unwrap()
    }

    fn stop(mut self) -> String {
        let mut child = self.child.take().unwrap();
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "serve did not stop:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.log()
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
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn workspace(root: &std::path::Path, name: &str) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("bots")).unwrap();
    std::fs::create_dir_all(dir.join("playbooks")).unwrap();
    std::fs::write(dir.join("playbooks/noop.yaml"), NOOP).unwrap();
    std::fs::write(
        dir.join("bots/vpn-job.yaml"),
        "name: vpn-job\nplaybook: ../playbooks/noop.yaml\nschedule: [\"* * * * * *\"]\noverlap: allow\nruns_on: [vpn]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("bots/anywhere.yaml"),
        "name: anywhere\nplaybook: ../playbooks/noop.yaml\nschedule: [\"* * * * * *\"]\noverlap: allow\n",
    )
    .unwrap();
    dir
}

/// Two real `clerk serve` on one PostgreSQL store, one started with
/// `--labels vpn`: every run of the `runs_on: [vpn]` bot runs on that one;
/// `clerk workers` lists both; with it stopped, `clerk bots list` says no
/// worker can run the bot, and its firings wait.
#[test]
fn runs_on_sends_a_bot_only_to_workers_with_the_label() {
    let name = format!(
        "clerk_workers_{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    common::create_pg_database(&name);
    let _drop = DropDb(name.clone());
    let db = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let root = tempfile::tempdir().unwrap();
    let plain_dir = workspace(root.path(), "plain");
    let vpn_dir = workspace(root.path(), "vpn");
    // The dashboard (and /healthz) needs a user.
    let mut add = Command::new(env!("CARGO_BIN_EXE_clerk"))
        .arg("--workspace")
        .arg(&plain_dir)
        .args([
            "--db",
            &db,
            "users",
            "add",
            "ops",
            "--role",
            "admin",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        add.stdin
            .take()
            .unwrap()
            .write_all(b"a long enough password 1\n")
            .unwrap();
    }
    assert!(add.wait().unwrap().success());
    let plain = Serve::start(&plain_dir, &db, &["--http", "127.0.0.1:0"]);
    let mut url = String::new();
    wait_for("the dashboard's address", Duration::from_secs(60), || {
        let log = plain.log();
        let Some(line) = log.lines().find(|l| l.contains("dashboard listening")) else {
            return false;
        };
        let Some(i) = line.find("http://") else {
            return false;
        };
        url = line[i + 7..]
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '"' && *c != '/')
            .collect();
        true
    });
    let vpn = Serve::start(&vpn_dir, &db, &["--labels", "vpn,grid-eu"]);

    // Both registered and live.
    let mut workers = serde_json::Value::Null;
    wait_for("two live workers", Duration::from_secs(60), || {
        workers = json_of(&plain.clerk(&["workers", "--json"]));
        workers
            .as_array()
            .is_some_and(|a| a.iter().filter(|w| w["live"] == true).count() == 2)
    });
    let vpn_worker = workers
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["labels"] == json!(["grid-eu", "vpn"]))
        .unwrap_or_else(|| panic!("the vpn worker is listed with its labels: {workers}"))
        ["runs_worker"]
        .as_str()
        .unwrap()
        .to_string();
    let text = String::from_utf8_lossy(&plain.clerk(&["workers"]).stdout).into_owned();
    assert!(
        text.contains("grid-eu,vpn") && text.contains("live"),
        "{text}"
    );
    let health = healthz(&url);
    assert_eq!(health["workers"]["live"], 2, "{health}");
    assert_eq!(
        health["workers"]["bots_without_worker"],
        json!([]),
        "{health}"
    );

    // Enough runs of both bots, started by both workers.
    let finished = |bot: &str| -> Vec<serde_json::Value> {
        let out = plain.clerk(&["runs", "list", "--bot", bot, "--limit", "500", "--json"]);
        json_of(&out)
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r["status"] == "succeeded")
            .collect()
    };
    wait_for("8 runs of vpn-job", Duration::from_secs(90), || {
        finished("vpn-job").len() >= 8
    });
    wait_for(
        "runs of `anywhere` on both workers",
        Duration::from_secs(90),
        || {
            let w: std::collections::HashSet<String> = finished("anywhere")
                .iter()
                .filter_map(|r| r["worker"].as_str().map(str::to_string))
                .collect();
            w.len() >= 2
        },
    );
    for r in finished("vpn-job") {
        assert_eq!(
            r["worker"].as_str(),
            Some(vpn_worker.as_str()),
            "a vpn-job run on a worker without the label: {r}"
        );
    }
    let out = plain.clerk(&["bots", "list", "--json"]);
    let bots = json_of(&out);
    let vpn_bot = bots
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "vpn-job")
        .unwrap()
        .clone();
    assert_eq!(vpn_bot["runs_on"], json!(["vpn"]));
    assert!(vpn_bot["no_worker"].is_null(), "{vpn_bot}");

    // The vpn worker stops: nobody can run vpn-job any more.
    let log = vpn.stop();
    assert!(log.contains("worker registered"), "{log}");
    let out = plain.clerk(&["bots", "list"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("warning: bot vpn-job: no live worker can run it: it needs runs_on [vpn]"),
        "{text}"
    );
    assert!(!text.contains("bot anywhere: no live worker"), "{text}");
    let health = healthz(&url);
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(
        health["workers"]["bots_without_worker"],
        json!(["vpn-job"]),
        "{health}"
    );
    assert!(
        health["warnings"][0]
            .as_str()
            .is_some_and(|w| w.starts_with("bot vpn-job: no live worker can run it")),
        "{health}"
    );
    let workers = json_of(&plain.clerk(&["workers", "--json", "--all"]));
    let stopped = workers
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["runs_worker"] == vpn_worker.as_str())
        .unwrap()
        .clone();
    assert_eq!(stopped["live"], false);
    assert!(!stopped["stopped_at"].is_null(), "{stopped}");
    // Its firings wait for a worker with the label (the plain one, still
    // running, never takes them).
    let before = finished("vpn-job").len();
    wait_for("queued vpn-job firings", Duration::from_secs(60), || {
        let out = plain.clerk(&[
            "runs", "list", "--bot", "vpn-job", "--status", "queued", "--json",
        ]);
        json_of(&out).as_array().is_some_and(|a| a.len() >= 3)
    });
    assert_eq!(finished("vpn-job").len(), before);
    plain.stop();
}

/// `GET /healthz` on `addr` (host:port), as JSON.
fn healthz(addr: &str) -> serde_json::Value {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the dashboard");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    // A chunked body: the JSON object is between the first `{` and last `}`.
    let (Some(a), Some(b)) = (body.find('{'), body.rfind('}')) else {
        panic!("no JSON in /healthz: {raw}");
    };
    serde_json::from_str(&body[a..=b]).unwrap_or_else(|e| panic!("{e}: {raw}"))
}

/// Drops a PostgreSQL test database at the end of a test.
struct DropDb(String);

impl Drop for DropDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-q",
                "-c",
            ])
            .arg(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0))
            .output();
    }
}
