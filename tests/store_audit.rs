//! Integration tests of the store (runs, queue, bot state, leases, migrations)
//! and the audit trail (chain, concurrency, tamper detection, redaction,
//! export), each run against a real SQLite file AND the real PostgreSQL at
//! 127.0.0.1:5432 (a fresh database per test, dropped afterwards). No mocks.
//! PostgreSQL must be up: the postgres tests fail, loudly, when it is not.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use clerk::audit::{
    self, AuditEvent, ExportFormat, GENESIS_HASH, NewEvent, Recorder, canonical_json, event_hash,
};
use clerk::store::{Backend, NewRun, RunChange, RunFilter, Store, StoreError};
use serde_json::json;

const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

// ---------------------------------------------------------------- harness

/// A test database; dropped (PostgreSQL) or deleted (SQLite tempdir) on drop.
struct TestDb {
    store: Store,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Best effort, on a thread of its own: Drop cannot await.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async {
                    let admin = admin_pool().await?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&admin)
                        .await?;
                    admin.close().await;
                    Ok::<(), anyhow::Error>(())
                })?;
                Ok::<(), anyhow::Error>(())
            })
            .join();
        }
    }
}

async fn admin_pool() -> anyhow::Result<sqlx::AnyPool> {
    sqlx::any::install_default_drivers();
    Ok(sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(PG_ADMIN_URL)
        .await?)
}

async fn sqlite_db() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/sub/dir/clerk.db", dir.path().display());
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    TestDb {
        store,
        _dir: Some(dir),
        pg_name: None,
    }
}

async fn pg_db() -> TestDb {
    let admin = admin_pool().await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is required for this test and is not reachable at {PG_ADMIN_URL}: {e}\n\
             start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        )
    });
    let name = format!(
        "clerk_test_{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    admin.close().await;
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    TestDb {
        store,
        _dir: None,
        pg_name: Some(name),
    }
}

/// Declares `mod $name { sqlite(), postgres() }`, each calling `$name(store)`.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let db = super::sqlite_db().await;
                super::$name(db.store.clone()).await;
                db.store.close().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let db = super::pg_db().await;
                super::$name(db.store.clone()).await;
                db.store.close().await;
            }
        }
    )*};
}

both_backends!(
    migrations_are_idempotent_and_concurrent,
    run_lifecycle,
    duplicate_schedule_slot_is_skipped,
    get_run_by_prefix,
    list_runs_filters_and_order,
    claim_order_and_exclusion,
    claim_due_is_exclusive_across_processes,
    bot_pause_is_persisted_with_event,
    scheduler_lease,
    chain_links_and_seq,
    events_paging_and_run_filter,
    concurrent_appends_keep_the_chain,
    verify_detects_update,
    verify_detects_delete,
    verify_detects_forged_copy,
    verify_detects_forged_wrong_hash,
    verify_detects_rehashed_edit,
    verify_reports_unreadable_row,
    recorder_redacts_before_hashing,
    export_jsonl_and_csv,
    export_to_file_is_atomic,
);

// ---------------------------------------------------------------- helpers

fn new_run(id: &str, bot: Option<&str>, slot: Option<i64>) -> NewRun {
    NewRun {
        id: id.to_string(),
        bot: bot.map(str::to_string),
        playbook: "playbooks/renewals.yaml".to_string(),
        inputs: json!({"source": "renewals.xlsx", "n": 3}),
        scheduled_for: slot.map(|h| Utc.with_ymd_and_hms(2025, 1, 1, h as u32, 0, 0).unwrap()),
        actor: bot.unwrap_or("alice").to_string(),
        attempt: 1,
        status: "queued".to_string(),
        ..Default::default()
    }
}

fn queued(actor: &str) -> NewEvent {
    NewEvent::new("run.queued", actor)
}

fn ulid() -> String {
    ulid::Ulid::new().to_string()
}

/// How many migrations clerk ships (each one is a row in `schema_migrations`).
fn migrations() -> i64 {
    clerk::store::migrate::MIGRATIONS.len() as i64
}

async fn count(store: &Store, table: &str) -> i64 {
    use sqlx::Row;
    sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
        .fetch_one(store.pool())
        .await
        .unwrap()
        .try_get::<i64, _>("n")
        .unwrap()
}

async fn all_events(store: &Store) -> Vec<AuditEvent> {
    store.events(None, 0, 1_000_000).await.unwrap()
}

async fn exec(store: &Store, q: &str) {
    sqlx::query(&store.sql(q))
        .execute(store.pool())
        .await
        .unwrap();
}

/// Appends `n` events alternating between two runs and none.
async fn fill(store: &Store, n: usize) -> Vec<AuditEvent> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut e = NewEvent::new("action", "bot-a")
            .step(format!("{i}"), Some("Fill in"))
            .action("browser.fill")
            .target(format!("label=Field {i}"))
            .detail(json!({"value": i, "nested": {"b": [1, 2], "a": "x"}}))
            .outcome("ok")
            .duration_ms(i as i64);
        match i % 3 {
            0 => e = e.run("01RUNAAAAAAAAAAAAAAAAAAAAA"),
            1 => e = e.run("01RUNBBBBBBBBBBBBBBBBBBBBB"),
            _ => {}
        }
        out.push(store.append_event(e).await.unwrap());
    }
    out
}

async fn first_bad(store: &Store) -> (i64, String) {
    let report = audit::verify(store).await.unwrap();
    let bad = report.first_bad.expect("verify should report a bad event");
    (bad.id, bad.reason)
}

// ---------------------------------------------------------------- store

async fn migrations_are_idempotent_and_concurrent(store: Store) {
    let url = store.url().to_string();
    // Two more "processes" opening the same database at once.
    let (a, b) = tokio::join!(Store::open(&url), Store::open(&url));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(count(&store, "schema_migrations").await, migrations());
    for t in ["runs", "bot_state", "scheduler_lease", "audit_events"] {
        assert_eq!(count(&a, t).await, 0, "table {t}");
    }
    // Reopening once more changes nothing.
    let c = Store::open(&url).await.unwrap();
    assert_eq!(count(&c, "schema_migrations").await, migrations());
    for s in [a, b, c] {
        s.close().await;
    }
}

async fn run_lifecycle(store: Store) {
    let id = ulid();
    let run = store
        .create_run(&new_run(&id, Some("nightly"), Some(2)), queued("nightly"))
        .await
        .unwrap()
        .expect("inserted");
    assert_eq!(run.status, "queued");
    assert_eq!(run.started_at, None);
    assert_eq!(store.get_run(&id).await.unwrap().as_ref(), Some(&run));

    let started = Utc::now();
    let running = store
        .transition_run(
            &id,
            &["queued"],
            RunChange {
                status: Some("running".into()),
                started_at: Some(started),
                worker: Some("w1".into()),
                ..Default::default()
            },
            NewEvent::new("run.started", "nightly"),
        )
        .await
        .unwrap();
    assert_eq!(running.status, "running");
    assert_eq!(running.worker.as_deref(), Some("w1"));
    assert_eq!(
        running.started_at.map(|t| t.timestamp_micros()),
        Some(started.timestamp_micros())
    );

    let done = store
        .transition_run(
            &id,
            &["running"],
            RunChange {
                status: Some("failed".into()),
                finished_at: Some(Utc::now()),
                error: Some("portal said no".into()),
                failed_step: Some("4/item[2]/1".into()),
                vars: Some(json!({"entered": [1, 2], "z": null, "a": "b"})),
                ..Default::default()
            },
            NewEvent::new("run.finished", "nightly").outcome("failed"),
        )
        .await
        .unwrap();
    assert_eq!(done.status, "failed");
    assert_eq!(done.worker.as_deref(), Some("w1"), "unchanged fields kept");
    assert_eq!(done.failed_step.as_deref(), Some("4/item[2]/1"));
    assert_eq!(
        done.vars,
        Some(json!({"entered": [1, 2], "z": null, "a": "b"}))
    );
    assert_eq!(store.get_run(&id).await.unwrap(), Some(done.clone()));

    // JSON shape used by `clerk runs list --json`.
    let v = serde_json::to_value(&done).unwrap();
    for k in [
        "id",
        "bot",
        "playbook",
        "status",
        "scheduled_for",
        "started_at",
        "finished_at",
    ] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    assert_eq!(v["scheduled_for"], "2025-01-01T02:00:00.000000Z");

    // One event per state change, in the run, seq 1..3.
    let evs = store.events(Some(&id), 0, 100).await.unwrap();
    let kinds: Vec<_> = evs.iter().map(|e| (e.kind.as_str(), e.seq)).collect();
    assert_eq!(
        kinds,
        [("run.queued", 1), ("run.started", 2), ("run.finished", 3)]
    );

    // A missing run is NotFound, and nothing is appended.
    let err = store
        .transition_run(
            "01NOSUCHRUN0000000000000000",
            &[],
            RunChange::default(),
            queued("x"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert!(!err.is_transient());
    assert!(err.to_string().contains("01NOSUCHRUN"), "{err}");
    assert_eq!(count(&store, "audit_events").await, 3);
    assert!(audit::verify(&store).await.unwrap().is_ok());
}

async fn duplicate_schedule_slot_is_skipped(store: Store) {
    let first = store
        .create_run(
            &new_run(&ulid(), Some("nightly"), Some(3)),
            queued("nightly"),
        )
        .await
        .unwrap();
    assert!(first.is_some());
    let dup = store
        .create_run(
            &new_run(&ulid(), Some("nightly"), Some(3)),
            queued("nightly"),
        )
        .await
        .unwrap();
    assert!(dup.is_none(), "same bot + scheduled_for is refused");
    assert_eq!(
        count(&store, "audit_events").await,
        1,
        "no event for the refused run"
    );
    // Other slot, other bot and manual runs (no bot, no slot) are fine.
    for r in [
        new_run(&ulid(), Some("nightly"), Some(4)),
        new_run(&ulid(), Some("other"), Some(3)),
        new_run(&ulid(), None, None),
        new_run(&ulid(), None, None),
    ] {
        assert!(
            store
                .create_run(&r, queued(&r.actor))
                .await
                .unwrap()
                .is_some()
        );
    }
    // A manual run that starts right away.
    let mut m = new_run(&ulid(), None, None);
    m.status = "running".into();
    let m = store
        .create_run(&m, queued("alice"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.started_at, Some(m.queued_at));
    assert_eq!(count(&store, "runs").await, 6);
    assert_eq!(count(&store, "audit_events").await, 6);
}

async fn get_run_by_prefix(store: Store) {
    let a = "01JAAAAAAA0000000000000001".to_string();
    let b = "01JAAAAAAA0000000000000002".to_string();
    let c = "01JBBBBBBB0000000000000003".to_string();
    for id in [&a, &b, &c] {
        store
            .create_run(&new_run(id, None, None), queued("alice"))
            .await
            .unwrap();
    }
    assert_eq!(store.get_run(&c[..8]).await.unwrap().unwrap().id, c);
    assert_eq!(
        store
            .get_run(&c[..8].to_lowercase())
            .await
            .unwrap()
            .unwrap()
            .id,
        c
    );
    assert_eq!(store.get_run(&a).await.unwrap().unwrap().id, a);
    assert!(
        store.get_run("01JB").await.unwrap().is_none(),
        "prefix too short"
    );
    assert!(store.get_run("01JCCCCC").await.unwrap().is_none());
    assert!(store.get_run("01JB%").await.unwrap().is_none());
    let err = store.get_run("01JAAAAAAA").await.unwrap_err();
    assert!(matches!(err, StoreError::Ambiguous(_)), "{err}");
}

async fn list_runs_filters_and_order(store: Store) {
    let mut ids = Vec::new();
    for (i, bot) in ["a", "b", "a", "a", "b"].iter().enumerate() {
        let id = ulid();
        store
            .create_run(&new_run(&id, Some(bot), Some(i as i64)), queued(bot))
            .await
            .unwrap();
        ids.push(id);
    }
    store
        .transition_run(
            &ids[1],
            &["queued"],
            RunChange {
                status: Some("succeeded".into()),
                ..Default::default()
            },
            NewEvent::new("run.finished", "b"),
        )
        .await
        .unwrap();
    let all = store.list_runs(&RunFilter::default()).await.unwrap();
    let got: Vec<_> = all.iter().map(|r| r.id.clone()).collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(got, newest_first);

    let a = store
        .list_runs(&RunFilter {
            bot: Some("a".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        a.iter().map(|r| &r.id).collect::<Vec<_>>(),
        [&ids[3], &ids[2], &ids[0]]
    );
    let a2 = store
        .list_runs(&RunFilter {
            bot: Some("a".into()),
            limit: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(a2.len(), 2);
    let done = store
        .list_runs(&RunFilter {
            status: Some("succeeded".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(done.iter().map(|r| &r.id).collect::<Vec<_>>(), [&ids[1]]);
    let b_queued = store
        .list_runs(&RunFilter {
            bot: Some("b".into()),
            status: Some("queued".into()),
            limit: Some(10),
        })
        .await
        .unwrap();
    assert_eq!(
        b_queued.iter().map(|r| &r.id).collect::<Vec<_>>(),
        [&ids[4]]
    );

    let q = store.runs_with_status("queued").await.unwrap();
    assert_eq!(
        q.iter().map(|r| &r.id).collect::<Vec<_>>(),
        [&ids[0], &ids[2], &ids[3], &ids[4]]
    );
    assert!(store.runs_with_status("running").await.unwrap().is_empty());
}

async fn claim_order_and_exclusion(store: Store) {
    // Queued in this order, but scheduled 5h, 3h (bot b), manual (now), 1h.
    let late = ulid();
    store
        .create_run(&new_run(&late, Some("a"), Some(5)), queued("a"))
        .await
        .unwrap();
    let b = ulid();
    store
        .create_run(&new_run(&b, Some("b"), Some(3)), queued("b"))
        .await
        .unwrap();
    let manual = ulid();
    store
        .create_run(&new_run(&manual, None, None), queued("alice"))
        .await
        .unwrap();
    let early = ulid();
    store
        .create_run(&new_run(&early, Some("a"), Some(1)), queued("a"))
        .await
        .unwrap();

    let c1 = store.claim_next_queued("w1", &[]).await.unwrap().unwrap();
    assert_eq!(c1.id, early);
    assert_eq!(c1.status, "running");
    assert_eq!(c1.worker.as_deref(), Some("w1"));
    assert!(c1.started_at.is_some());
    assert_eq!(store.get_run(&early).await.unwrap(), Some(c1.clone()));

    let c2 = store
        .claim_next_queued("w1", &["b".to_string()])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c2.id, late, "bot b excluded, manual run is newest");
    let c3 = store
        .claim_next_queued("w2", &["b".to_string(), "zz".into()])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c3.id, manual, "manual runs are never excluded");
    assert!(
        store
            .claim_next_queued("w2", &["b".to_string()])
            .await
            .unwrap()
            .is_none()
    );
    let c4 = store.claim_next_queued("w2", &[]).await.unwrap().unwrap();
    assert_eq!(c4.id, b);
    assert!(store.claim_next_queued("w2", &[]).await.unwrap().is_none());

    let started = store.events(Some(&early), 0, 10).await.unwrap();
    assert_eq!(started.len(), 2);
    assert_eq!(started[1].kind, "run.started");
    assert_eq!(started[1].seq, 2);
    assert_eq!(started[1].actor, "a");
    assert_eq!(started[1].detail["worker"], "w1");
    assert!(audit::verify(&store).await.unwrap().is_ok());
}

/// `claim_due` (what workers call) from two independent stores — two
/// processes' worth of pools and write locks — with 3 workers each: every due
/// run is claimed exactly once, with one `run.started` event each.
async fn claim_due_is_exclusive_across_processes(store: Store) {
    use clerk::store::{QueuedRun, SchedBatch};
    const RUNS: usize = 24;
    let now = Utc::now();
    let mut batch = SchedBatch::default();
    for i in 0..RUNS {
        let bot = format!("bot{}", i % 4);
        batch.runs.push(QueuedRun {
            id: ulid(),
            bot: bot.clone(),
            playbook: "playbooks/renewals.yaml".into(),
            inputs: json!({}),
            scheduled_for: Some(now - chrono::Duration::seconds(100 - i as i64)),
            due_at: now - chrono::Duration::seconds(100 - i as i64),
            // `allow`: runs of one bot may run side by side, so nothing but
            // the claim itself decides who gets a run.
            overlap: "allow".into(),
            actor: bot.clone(),
            attempt: 1,
            retry_of: None,
            event: queued(&bot),
        });
    }
    let inserted = store.write_sched_batch(&batch).await.unwrap();
    assert_eq!(inserted.len(), RUNS);
    let other = Store::open(store.url()).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..6 {
        let s = if w % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(r) = s
                .claim_due(&format!("w{w}"), clerk::store::ClaimScope::AnyBot)
                .await
                .unwrap()
                .run
            {
                mine.push(r.id);
            }
            mine
        }));
    }
    let mut claimed = Vec::new();
    let mut per_worker = Vec::new();
    for t in tasks {
        let mine = t.await.unwrap();
        per_worker.push(mine.len());
        claimed.extend(mine);
    }
    let unique: HashSet<_> = claimed.iter().collect();
    assert_eq!(
        claimed.len(),
        RUNS,
        "every run claimed once: {per_worker:?}"
    );
    assert_eq!(unique.len(), RUNS);
    assert_eq!(store.runs_with_status("running").await.unwrap().len(), RUNS);
    let started = count_where(&store, "audit_events", "kind = 'run.started'").await;
    assert_eq!(started, RUNS as i64, "one run.started per claim");
    assert!(audit::verify(&store).await.unwrap().is_ok());
    other.close().await;
}

async fn count_where(store: &Store, table: &str, cond: &str) -> i64 {
    use sqlx::Row;
    sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table} WHERE {cond}"))
        .fetch_one(store.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap()
}

async fn bot_pause_is_persisted_with_event(store: Store) {
    assert!(store.bot_states().await.unwrap().is_empty());
    store
        .set_bot_paused(
            "nightly",
            true,
            NewEvent::new("admin.pause", "alice").target("nightly"),
        )
        .await
        .unwrap();
    let s = store.bot_states().await.unwrap();
    assert!(s["nightly"].paused);
    assert_eq!(s["nightly"].updated_by, "alice");
    store
        .set_bot_paused(
            "nightly",
            false,
            NewEvent::new("admin.resume", "bob").target("nightly"),
        )
        .await
        .unwrap();
    store
        .set_bot_paused("other", true, NewEvent::new("admin.pause", "bob"))
        .await
        .unwrap();
    // Seen by a fresh handle (persisted).
    let again = Store::open(store.url()).await.unwrap();
    let s = again.bot_states().await.unwrap();
    assert_eq!(s.len(), 2);
    assert!(!s["nightly"].paused);
    assert_eq!(s["nightly"].updated_by, "bob");
    assert!(s["other"].paused);
    let kinds: Vec<_> = all_events(&store)
        .await
        .into_iter()
        .map(|e| (e.kind, e.seq))
        .collect();
    assert_eq!(
        kinds,
        [
            ("admin.pause".into(), 0),
            ("admin.resume".into(), 0),
            ("admin.pause".into(), 0)
        ]
    );
    again.close().await;
}

async fn scheduler_lease(store: Store) {
    let ttl = Duration::from_secs(30);
    assert!(
        store
            .try_acquire_lease("scheduler", "A", ttl)
            .await
            .unwrap()
    );
    assert!(
        !store
            .try_acquire_lease("scheduler", "B", ttl)
            .await
            .unwrap()
    );
    assert!(
        store
            .try_acquire_lease("scheduler", "A", ttl)
            .await
            .unwrap(),
        "renew"
    );
    assert!(
        store.try_acquire_lease("other", "B", ttl).await.unwrap(),
        "leases are per name"
    );
    store.release_lease("scheduler", "B").await.unwrap(); // not B's: no effect
    assert!(
        !store
            .try_acquire_lease("scheduler", "B", ttl)
            .await
            .unwrap()
    );
    store.release_lease("scheduler", "A").await.unwrap();
    assert!(
        store
            .try_acquire_lease("scheduler", "B", Duration::from_millis(1000))
            .await
            .unwrap()
    );
    assert!(
        !store
            .try_acquire_lease("scheduler", "A", ttl)
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        store
            .try_acquire_lease("scheduler", "A", ttl)
            .await
            .unwrap(),
        "expired lease taken over"
    );
    assert!(
        !store
            .try_acquire_lease("scheduler", "B", ttl)
            .await
            .unwrap()
    );

    // Many contenders from two handles at once: exactly one wins.
    let other = Store::open(store.url()).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            s.try_acquire_lease("race", &format!("h{i}"), Duration::from_secs(30))
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1);
    other.close().await;
}

// ---------------------------------------------------------------- audit chain

async fn chain_links_and_seq(store: Store) {
    let evs = fill(&store, 9).await;
    let stored = all_events(&store).await;
    assert_eq!(stored, evs, "returned events are what is stored");
    let mut prev = GENESIS_HASH.to_string();
    let mut seqs: HashMap<Option<String>, i64> = HashMap::new();
    for (i, e) in stored.iter().enumerate() {
        assert_eq!(e.id, i as i64 + 1);
        assert_eq!(e.prev_hash, prev);
        assert_eq!(e.hash.len(), 64);
        assert_eq!(e.hash, e.compute_hash());
        assert_eq!(e.at.timestamp_subsec_nanos() % 1000, 0, "microseconds");
        let s = seqs.entry(e.run_id.clone()).or_insert(0);
        if e.run_id.is_some() {
            *s += 1;
            assert_eq!(e.seq, *s);
        } else {
            assert_eq!(e.seq, 0);
        }
        prev = e.hash.clone();
    }
    // The hash is reproducible from the documented rule (format 2: SHA-256
    // of the RFC 8785 canonical JSON of every stored field but the hash).
    let e = &stored[0];
    assert_eq!(e.hash_format, 2);
    let content = json!({
        "hash_format": 2, "id": e.id, "run_id": e.run_id, "seq": e.seq,
        "at": e.at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "actor": e.actor, "kind": e.kind, "step": e.step, "step_name": e.step_name,
        "action": e.action, "target": e.target, "detail": e.detail, "outcome": e.outcome,
        "duration_ms": e.duration_ms, "error": e.error, "item_key": null,
        "prev_hash": e.prev_hash,
    });
    let text = audit::format::jcs(&content).unwrap();
    assert!(text.starts_with(r#"{"action":"browser.fill","actor":"bot-a","at":"#));
    use sha2::Digest as _;
    assert_eq!(hex::encode(sha2::Sha256::digest(text.as_bytes())), e.hash);
    // Format 1 (events written before migration 0005) still hashes as it did.
    let v1 = json!({
        "id": e.id, "run_id": e.run_id, "seq": e.seq,
        "at": e.at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "actor": e.actor, "kind": e.kind, "step": e.step, "step_name": e.step_name,
        "action": e.action, "target": e.target, "detail": e.detail, "outcome": e.outcome,
        "duration_ms": e.duration_ms, "error": e.error,
    });
    let mut legacy = e.clone();
    legacy.hash_format = 1;
    assert!(canonical_json(&v1).starts_with(r#"{"action":"browser.fill","actor":"bot-a","at":"#));
    assert_eq!(legacy.compute_hash(), event_hash(&e.prev_hash, &v1));

    let report = audit::verify(&store).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.events, 9);
    assert_eq!(report.last_id, Some(9));
    assert_eq!(report.last_hash.as_deref(), Some(prev.as_str()));
}

async fn events_paging_and_run_filter(store: Store) {
    fill(&store, 25).await;
    let mut after = 0;
    let mut ids = Vec::new();
    loop {
        let page = store.events(None, after, 7).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        after = page.last().unwrap().id;
        ids.extend(page.iter().map(|e| e.id));
    }
    assert_eq!(ids, (1..=25).collect::<Vec<_>>());
    let a = store
        .events(Some("01RUNAAAAAAAAAAAAAAAAAAAAA"), 0, 100)
        .await
        .unwrap();
    assert_eq!(a.len(), 9);
    assert!(a.iter().enumerate().all(|(i, e)| e.seq == i as i64 + 1));
    let a_tail = store
        .events(Some("01RUNAAAAAAAAAAAAAAAAAAAAA"), a[4].id, 2)
        .await
        .unwrap();
    assert_eq!(a_tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [6, 7]);
    assert!(store.events(Some("nope"), 0, 10).await.unwrap().is_empty());
}

async fn concurrent_appends_keep_the_chain(store: Store) {
    // 8 tasks x 50 appends, spread over two independent handles (as two
    // processes would be), half of the events in per-task runs.
    let other = Store::open(store.url()).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = if t % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            let run = format!("01CONCURRENT0000000000000{t}");
            for i in 0..50 {
                let mut e = NewEvent::new("action", &format!("task{t}")).detail(json!({"i": i}));
                if i % 2 == 0 {
                    e = e.run(run.as_str());
                }
                s.append_event(e).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let report = audit::verify(&store).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.events, 400);
    let evs = all_events(&store).await;
    assert_eq!(
        evs.iter().map(|e| e.id).collect::<Vec<_>>(),
        (1..=400).collect::<Vec<_>>()
    );
    for t in 0..8 {
        let run = format!("01CONCURRENT0000000000000{t}");
        let seqs: Vec<_> = store
            .events(Some(&run), 0, 100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, (1..=25).collect::<Vec<_>>());
    }
    other.close().await;
}

async fn verify_detects_update(store: Store) {
    fill(&store, 20).await;
    assert!(audit::verify(&store).await.unwrap().is_ok());
    exec(&store, "UPDATE audit_events SET target = 'x' WHERE id = 17").await;
    let (id, reason) = first_bad(&store).await;
    assert_eq!(id, 17);
    assert_eq!(
        reason,
        "event 17: hash does not match its content (edited?)"
    );
    let report = audit::verify(&store).await.unwrap();
    assert_eq!(report.events, 20, "counts all events");
}

async fn verify_detects_delete(store: Store) {
    fill(&store, 20).await;
    exec(&store, "DELETE FROM audit_events WHERE id = 17").await;
    let (id, reason) = first_bad(&store).await;
    assert_eq!(id, 18);
    assert_eq!(reason, "event 18: previous event 17 is missing (deleted?)");
    // Deleting the first event is caught too.
    exec(&store, "DELETE FROM audit_events WHERE id = 1").await;
    let (id, reason) = first_bad(&store).await;
    assert_eq!(
        (id, reason.as_str()),
        (2, "event 2: previous event 1 is missing (deleted?)")
    );
}

async fn verify_detects_forged_copy(store: Store) {
    fill(&store, 12).await;
    // A copy of event 5 with different detail, appended at max+1 with the
    // original hashes.
    exec(
        &store,
        "INSERT INTO audit_events (id, run_id, seq, at, actor, kind, step, step_name, action, \
         target, detail, outcome, duration_ms, error, prev_hash, hash) \
         SELECT 13, run_id, 99, at, actor, kind, step, step_name, action, target, \
         '{\"value\": 1000}', outcome, duration_ms, error, prev_hash, hash \
         FROM audit_events WHERE id = 5",
    )
    .await;
    let (id, reason) = first_bad(&store).await;
    assert_eq!(id, 13);
    assert_eq!(
        reason,
        "event 13: hash does not match its content (edited?)"
    );
}

async fn verify_detects_forged_wrong_hash(store: Store) {
    let evs = fill(&store, 12).await;
    // Links correctly to the head, but the hash is made up (plausible shape).
    let head = &evs[11].hash;
    let fake = event_hash(head, &json!({"forged": true}));
    let q = format!(
        "INSERT INTO audit_events (id, run_id, seq, at, actor, kind, detail, prev_hash, hash) \
         VALUES (13, NULL, 0, '{}', 'mallory', 'action', '{{}}', '{head}', '{fake}')",
        clerk::store::time::format_ts(&Utc::now())
    );
    exec(&store, &q).await;
    let (id, reason) = first_bad(&store).await;
    assert_eq!(id, 13);
    assert!(reason.contains("hash does not match"), "{reason}");
}

async fn verify_detects_rehashed_edit(store: Store) {
    let evs = fill(&store, 20).await;
    // Edit event 11 AND recompute its hash correctly: event 12 no longer links.
    let mut e = evs[10].clone();
    e.target = Some("label=Something else".into());
    let new_hash = e.compute_hash();
    exec(
        &store,
        &format!(
            "UPDATE audit_events SET target = 'label=Something else', hash = '{new_hash}' WHERE id = 11"
        ),
    )
    .await;
    let (id, reason) = first_bad(&store).await;
    assert_eq!(id, 12);
    assert_eq!(reason, "event 12: prev_hash does not link to event 11");
}

async fn verify_reports_unreadable_row(store: Store) {
    fill(&store, 6).await;
    exec(
        &store,
        "UPDATE audit_events SET at = 'yesterday' WHERE id = 4",
    )
    .await;
    let (id, reason) = first_bad(&store).await;
    assert_eq!(id, 4);
    assert!(
        reason.starts_with("event 4: hash does not match"),
        "{reason}"
    );
    exec(
        &store,
        "UPDATE audit_events SET detail = '{not json' WHERE id = 2",
    )
    .await;
    let (id, reason) = first_bad(&store).await;
    assert_eq!(id, 2);
    assert!(reason.contains("detail is not valid JSON"), "{reason}");
    // Reading the events for display fails with a message naming the event.
    let err = store.events(None, 0, 100).await.unwrap_err();
    assert!(err.to_string().contains("event 2"), "{err}");
}

// ---------------------------------------------------------------- recorder, export

async fn recorder_redacts_before_hashing(store: Store) {
    let redact: audit::RedactFn = Arc::new(|s: &str| s.replace("hunter2", "***"));
    let rec = Recorder::new(store.clone(), redact);
    let run = ulid();
    let ev = NewEvent::new("action", "bot-a")
        .run(run.as_str())
        .step("3/item[1]/2", Some("Type hunter2"))
        .action("browser.fill")
        .target("input[value=hunter2]")
        .detail(json!({
            "value": "pw is hunter2",
            "list": ["a", "hunter2", {"deep": "xhunter2x"}],
            "hunter2": 5,
            "n": 42,
        }))
        .outcome("failed")
        .error("login failed for password hunter2");
    let stored = rec.record(ev).await.unwrap();
    assert_eq!(stored.target.as_deref(), Some("input[value=***]"));
    assert_eq!(stored.step_name.as_deref(), Some("Type ***"));
    assert_eq!(
        stored.error.as_deref(),
        Some("login failed for password ***")
    );
    assert_eq!(
        stored.detail,
        json!({"value": "pw is ***", "list": ["a", "***", {"deep": "x***x"}], "***": 5, "n": 42})
    );
    assert_eq!(
        stored.hash,
        stored.compute_hash(),
        "hash covers the redacted event"
    );
    let mut out = Vec::new();
    audit::export(&store, None, ExportFormat::Jsonl, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(audit::verify(&store).await.unwrap().is_ok());
    assert_eq!(rec.store().url(), store.url());
    let plain = rec.redact_event(NewEvent::new("x", "y").target("hunter2"));
    assert_eq!(plain.target.as_deref(), Some("***"));
}

async fn export_jsonl_and_csv(store: Store) {
    let run = "01JEXPORT00000000000000001".to_string();
    store
        .create_run(&new_run(&run, Some("b"), Some(1)), queued("b"))
        .await
        .unwrap();
    fill(&store, 4).await;
    store
        .append_event(
            NewEvent::new("action", "b")
                .run(run.as_str())
                .target("a, \"quoted\"\nline")
                .detail(json!({"z": 1, "a": [1, "two"]})),
        )
        .await
        .unwrap();
    let all = all_events(&store).await;

    let mut out = Vec::new();
    let n = audit::export(&store, None, ExportFormat::Jsonl, &mut out)
        .await
        .unwrap();
    assert_eq!(n, 6);
    let text = String::from_utf8(out).unwrap();
    let parsed: Vec<AuditEvent> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(parsed, all);
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let keys: Vec<_> = first.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, audit::export::FIELDS);
    assert!(first["at"].as_str().unwrap().ends_with('Z'));

    // Filtered by run, by prefix.
    let mut out = Vec::new();
    let n = audit::export(
        &store,
        Some(&run[..10].to_lowercase()),
        ExportFormat::Jsonl,
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(n, 2);
    let text = String::from_utf8(out).unwrap();
    assert!(text.lines().all(|l| l.contains(&run)));

    // CSV
    let mut out = Vec::new();
    let n = audit::export(&store, Some(&run), "CSV".parse().unwrap(), &mut out)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let mut rd = csv::Reader::from_reader(out.as_slice());
    let header: Vec<String> = rd.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(header, audit::export::FIELDS);
    let rows: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 2);
    let last = all.last().unwrap();
    assert_eq!(&rows[1][0], last.id.to_string());
    assert_eq!(&rows[1][9], "a, \"quoted\"\nline");
    let detail: serde_json::Value = serde_json::from_str(&rows[1][10]).unwrap();
    assert_eq!(detail, json!({"z": 1, "a": [1, "two"]}));
    assert_eq!(&rows[1][14], "", "item_key (none outside an item)");
    assert_eq!(&rows[1][15], "2", "hash_format");
    assert_eq!(&rows[1][17], last.hash);
    assert_eq!(&rows[0][6], "", "null as empty cell");

    let err = audit::export(
        &store,
        Some("01JNOSUCH"),
        ExportFormat::Csv,
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("01JNOSUCH"), "{err}");
    assert!("xml".parse::<ExportFormat>().is_err());
}

async fn export_to_file_is_atomic(store: Store) {
    fill(&store, 5).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out/audit.jsonl");
    let n = audit::export_to_file(&store, None, ExportFormat::Jsonl, &path)
        .await
        .unwrap();
    assert_eq!(n, 5);
    let before = std::fs::read_to_string(&path).unwrap();
    assert_eq!(before.lines().count(), 5);

    // A failing export leaves the old file untouched and no temporary files.
    let err = audit::export_to_file(&store, Some("01JNOSUCHRUN"), ExportFormat::Jsonl, &path)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("audit.jsonl"), "{err:#}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from("audit.jsonl")]);

    let csv_path = dir.path().join("audit.csv");
    assert_eq!(
        audit::export_to_file(&store, None, ExportFormat::Csv, &csv_path)
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        std::fs::read_to_string(&csv_path).unwrap().lines().count(),
        6
    );
}

// ---------------------------------------------------------------- open errors

#[tokio::test]
async fn sqlite_open_error_names_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let url = format!("sqlite://{}/sub/clerk.db", file.display());
    let err = Store::open(&url).await.unwrap_err();
    assert!(format!("{err:#}").contains(&url), "{err:#}");
}

#[tokio::test]
async fn sqlite_relative_path_creates_file() {
    // Relative to the current directory: use a unique directory under target/.
    let rel = format!("target/test-dbs/{}/clerk.db", ulid());
    let store = Store::open(&format!("sqlite://{rel}")).await.unwrap();
    assert!(std::path::Path::new(&rel).is_file());
    store.close().await;
    let _ = std::fs::remove_dir_all(std::path::Path::new(&rel).parent().unwrap());
}

#[tokio::test]
async fn unsupported_url_is_refused() {
    let err = Store::open("mysql://u:pw@h/db").await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("mysql://u:***@h/db"), "{msg}");
    assert!(!msg.contains("pw@"), "{msg}");
}

#[tokio::test]
async fn postgres_error_hides_the_password() {
    // Nothing listens on port 1: the connection is refused.
    let err = Store::open("postgres://postgres:s3cret@127.0.0.1:1/nope")
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("postgres://postgres:***@127.0.0.1:1/nope"),
        "{msg}"
    );
    assert!(!msg.contains("s3cret"), "{msg}");
}

#[tokio::test]
async fn postgres_wrong_database_is_a_clear_error() {
    let err = Store::open("postgres://postgres@127.0.0.1:5432/clerk_no_such_db")
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("clerk_no_such_db"), "{msg}");
}

// ---------------------------------------------------------------- first open, foreign writers, processes

/// Several handles migrating a brand-new database at the same moment.
async fn race_first_open(url: &str) {
    let opens = (0..4).map(|_| Store::open(url));
    let stores: Vec<Store> = futures::future::join_all(opens)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(count(&stores[0], "schema_migrations").await, migrations());
    for s in stores {
        s.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_open_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    race_first_open(&format!("sqlite://{}/new/clerk.db", dir.path().display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_open_postgres() {
    let fresh = format!("clerk_test_{}", ulid().to_lowercase());
    let url = format!("postgres://postgres@127.0.0.1:5432/{fresh}");
    let admin = admin_pool().await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {fresh}"))
        .execute(&admin)
        .await
        .unwrap();
    race_first_open(&url).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {fresh} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
}

both_backends!(
    appends_wait_for_a_foreign_writer,
    appends_from_several_processes
);

/// Another connection holds the write lock for a while: the append waits
/// (busy_timeout / lock queue) and then succeeds, chain intact.
async fn appends_wait_for_a_foreign_writer(store: Store) {
    fill(&store, 3).await;
    let mut conn = store.pool().acquire().await.unwrap();
    match store.backend() {
        Backend::Sqlite => {
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        Backend::Postgres => {
            sqlx::query("BEGIN").execute(&mut *conn).await.unwrap();
            sqlx::query("LOCK TABLE audit_events IN EXCLUSIVE MODE")
                .execute(&mut *conn)
                .await
                .unwrap();
        }
    }
    let s = store.clone();
    let append = tokio::spawn(async move { s.append_event(NewEvent::new("action", "late")).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !append.is_finished(),
        "the append must wait for the foreign writer"
    );
    sqlx::query("COMMIT").execute(&mut *conn).await.unwrap();
    drop(conn);
    let e = append.await.unwrap().unwrap();
    assert_eq!(e.id, 4);
    assert!(audit::verify(&store).await.unwrap().is_ok());
}

const CHILD_URL: &str = "CLERK_TEST_CHILD_URL";
const CHILD_TAG: &str = "CLERK_TEST_CHILD_TAG";
const CHILD_APPENDS: i64 = 60;

/// Three child processes (this test binary, running `child_process_appender`)
/// append to the same database while this process appends too.
async fn appends_from_several_processes(store: Store) {
    let exe = std::env::current_exe().unwrap();
    let mut children = Vec::new();
    for c in 0..3 {
        children.push(
            tokio::process::Command::new(&exe)
                .args([
                    "child_process_appender",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_URL, store.url())
                .env(CHILD_TAG, format!("child{c}"))
                .output(),
        );
    }
    let here = async {
        for i in 0..CHILD_APPENDS {
            store
                .append_event(
                    NewEvent::new("action", "parent")
                        .run("01PARENT")
                        .detail(json!({"i": i})),
                )
                .await
                .unwrap();
        }
    };
    let (outputs, ()) = tokio::join!(futures::future::join_all(children), here);
    for out in outputs {
        let out = out.unwrap();
        assert!(
            out.status.success(),
            "child failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "child did not run"
        );
    }
    let report = audit::verify(&store).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.events, 4 * CHILD_APPENDS as u64);
    for tag in ["child0", "child1", "child2"] {
        let run = format!("01{}", tag.to_uppercase());
        assert_eq!(
            store.events(Some(&run), 0, 1000).await.unwrap().len(),
            CHILD_APPENDS as usize
        );
    }
}

/// The child side of [`appends_from_several_processes`]; does nothing when
/// run normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process_appender() {
    let (Ok(url), Ok(tag)) = (std::env::var(CHILD_URL), std::env::var(CHILD_TAG)) else {
        return;
    };
    let store = Store::open(&url).await.unwrap();
    let run = format!("01{}", tag.to_uppercase());
    for i in 0..CHILD_APPENDS {
        store
            .append_event(
                NewEvent::new("action", &tag)
                    .run(run.as_str())
                    .detail(json!({"i": i})),
            )
            .await
            .unwrap();
    }
    store.close().await;
}
