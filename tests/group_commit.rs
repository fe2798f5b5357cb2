//! Group commit of the audit trail (issue 13 §2) on SQLite and PostgreSQL.
//!
//! The crash test: a real `clerk run` of a loop that logs, sets a variable
//! and writes one file per item (a file write is an outside effect) is
//! killed with `kill -9` at a random moment — after a random number of
//! files exist, plus a random few milliseconds. Afterwards
//! `clerk audit verify` must pass, and the durability rule must hold: every
//! file on disk was written after the events of everything before it were
//! durable, so for the highest file `n` the trail holds the `log` and `set`
//! events of items 1..=n and the `file.write` events of items 1..n. The kill
//! moments are seeded (printed; `CLERK_CRASH_SEED=N` replays them).
//!
//! The store tests: deferred events are invisible until a flush, commit
//! before a work-item transition's own event in its transaction, survive a
//! lost compare-and-set (written by the next flush, nothing twice), and the
//! chain verifies.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clerk::audit::{NewEvent, Recorder};
use clerk::store::{ItemChange, ItemId, ItemMove, ItemState, Store, StoreError};
use common::{Backend, Workspace};

const ROUNDS: usize = 4;
const ITEMS: usize = 400;
const DEADLINE: Duration = Duration::from_secs(120);

/// splitmix64, so a seed replays exactly.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n.max(1)
    }
}

fn seed(label: &str) -> u64 {
    let seed = match std::env::var("CLERK_CRASH_SEED") {
        Ok(s) => s.trim().parse().expect("CLERK_CRASH_SEED must be a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    };
    eprintln!("group commit crash test {label}: seed {seed} (replay with CLERK_CRASH_SEED={seed})");
    seed
}

fn playbook(round: usize) -> String {
    format!(
        r#"name: durability
steps:
  - name: items
    for_each: "{{{{ range(1, {last}) | list }}}}"
    as: n
    checkpoint: "r{round}-{{{{ n }}}}"
    steps:
      - log: "before {{{{ n }}}}"
      - set: {{ x: "{{{{ n }}}}" }}
      - file.write: {{ path: "out/{round}/{{{{ n }}}}.txt", text: "{{{{ n }}}}" }}
"#,
        last = ITEMS + 1
    )
}

/// The highest `n` with `out/<round>/<n>.txt` on disk (0 for none).
fn highest_file(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".txt"))
                        .and_then(|n| n.parse::<usize>().ok())
                })
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

fn kill9(child: &mut Child) {
    // SAFETY: a plain signal to our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGKILL);
    }
    let _ = child.wait();
}

/// Counts the run's `action` events of `action` with outcome ok.
fn count(ws: &Workspace, run: &str, action: &str) -> usize {
    common::query(
        ws,
        &format!(
            "SELECT COUNT(*) FROM audit_events WHERE run_id = '{run}' AND kind = 'action' \
             AND action = '{action}' AND outcome = 'ok'"
        ),
    )
    .first()
    .and_then(|s| s.trim().parse().ok())
    .unwrap_or(0)
}

fn crash_rounds(backend: Backend) {
    let mut rng = Rng(seed(&format!("{backend:?}")));
    let ws = Workspace::new(backend);
    let mut killed_mid_run = 0;
    for round in 1..=ROUNDS {
        let pb = format!("playbooks/durability-{round}.yaml");
        ws.write(&pb, &playbook(round));
        let out_dir = ws.path().join(format!("out/{round}"));
        // Kill once this many files exist, plus up to 20 ms.
        let target = 2 + rng.below(ITEMS as u64 / 2) as usize;
        let extra = Duration::from_millis(rng.below(20));
        let mut child = ws
            .cmd()
            .args(["run", &pb])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .expect("start clerk run");
        let deadline = Instant::now() + DEADLINE;
        let mut finished = false;
        loop {
            if highest_file(&out_dir) >= target {
                break;
            }
            if child.try_wait().expect("poll clerk").is_some() {
                finished = true;
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: clerk wrote only {} files in {DEADLINE:?}",
                highest_file(&out_dir)
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        if !finished {
            // The random part of the moment: not a synchronisation.
            std::thread::sleep(extra);
            kill9(&mut child);
            killed_mid_run += 1;
        }
        let highest = highest_file(&out_dir);

        // Any clerk command marks the dead run interrupted; verify must pass.
        let verify = ws.clerk(&["audit", "verify"]);
        assert_eq!(
            verify.code(),
            0,
            "round {round} ({backend:?}, killed after {highest} files): audit verify failed:\n{}\n{}",
            verify.stdout(),
            verify.stderr()
        );
        let runs = common::query(&ws, "SELECT id FROM runs ORDER BY queued_at DESC, id DESC");
        let run = runs.first().expect("the run is recorded").clone();
        let logs = count(&ws, &run, "log");
        let sets = count(&ws, &run, "set");
        let writes = count(&ws, &run, "file.write");
        eprintln!(
            "round {round} ({backend:?}): {highest} files on disk; trail holds {logs} log, {sets} set, {writes} file.write events"
        );
        // The durability rule: everything before the last file's write was
        // durable before that write started.
        assert!(
            logs >= highest && sets >= highest,
            "round {round}: file {highest} exists but only {logs} log / {sets} set events are in the trail"
        );
        assert!(
            writes + 1 >= highest,
            "round {round}: file {highest} exists but only {writes} file.write events are in the trail"
        );
        // Nothing recorded for an action that never ran.
        assert!(
            writes <= highest,
            "round {round}: {writes} writes for {highest} files"
        );
        if finished {
            assert_eq!(
                writes, ITEMS,
                "round {round}: a finished run has every event"
            );
        }
    }
    assert!(
        killed_mid_run > 0,
        "every run finished before the kill; the test proved nothing"
    );
}

#[test]
fn kill9_keeps_the_durability_rule_sqlite() {
    crash_rounds(Backend::Sqlite);
}

#[test]
fn kill9_keeps_the_durability_rule_postgres() {
    crash_rounds(Backend::Postgres);
}

// ---- the store's group commit, in process ----

async fn open(backend: Backend, dir: &Path) -> Store {
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}/clerk.db", dir.display()),
        Backend::Postgres => {
            let name = format!(
                "clerk_group_{}",
                ulid::Ulid::new().to_string().to_lowercase()
            );
            common::create_pg_database(&name);
            format!("postgres://postgres@127.0.0.1:5432/{name}")
        }
    };
    Store::open(&url).await.expect("open store")
}

/// The kind and item key of the last three events in the chain.
async fn last_three(store: &Store) -> Vec<(String, Option<String>)> {
    let events = store.events(None, 0, 100).await.expect("events");
    events[events.len() - 3..]
        .iter()
        .map(|e| (e.kind.clone(), e.item_key.clone()))
        .collect()
}

/// An in-progress item's move to `done`.
fn finish<'a>(id: &'a ItemId, done: &'a ItemChange) -> ItemMove<'a> {
    ItemMove {
        id,
        expected: &[ItemState::InProgress],
        change: done,
        event: NewEvent::new("item.finished", "ana"),
        then: &[],
    }
}

/// A pending item's start, with what follows its event.
fn start<'a>(id: &'a ItemId, change: &'a ItemChange, then: &'a [NewEvent]) -> ItemMove<'a> {
    ItemMove {
        id,
        expected: &[ItemState::Pending],
        change,
        event: NewEvent::new("item.started", "ana"),
        then,
    }
}

async fn kinds(store: &Store) -> Vec<String> {
    store
        .events(None, 0, 10_000)
        .await
        .expect("read events")
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

async fn store_semantics(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(backend, dir.path()).await;
    // No background batch during this test: it looks at what is pending.
    store.set_flush_after(Duration::from_secs(3600));
    let recorder = Recorder::new(
        store.clone(),
        Arc::new(|s: &str| s.replace("hunter2", "***")),
    );

    // Deferred: not in the table until a durability point.
    recorder
        .record_deferred(
            NewEvent::new("step.started", "ana").detail(serde_json::json!({"pw": "hunter2"})),
        )
        .await
        .expect("defer");
    recorder
        .record_deferred(NewEvent::new("action", "ana"))
        .await
        .expect("defer");
    assert_eq!(store.pending_events(), 2);
    assert!(
        kinds(&store).await.is_empty(),
        "deferred events are not yet in the chain"
    );
    recorder.sync().await.expect("sync");
    assert_eq!(store.pending_events(), 0);
    let events = store.events(None, 0, 100).await.expect("events");
    assert_eq!(
        events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["step.started", "action"]
    );
    assert_eq!(
        events[0].detail["pw"], "***",
        "deferred events are masked too"
    );

    // A work-item transition commits the pending events first, in its own
    // transaction, then its event.
    recorder
        .record_deferred(NewEvent::new("step.finished", "ana"))
        .await
        .expect("defer");
    let id = ItemId::new("run:L1", "1.items", "K-1");
    let change = ItemChange::to(ItemState::InProgress, "L1");
    store
        .transition_item(
            &id,
            &[ItemState::Pending],
            &change,
            NewEvent::new("item.started", "ana"),
        )
        .await
        .expect("transition");
    assert_eq!(store.pending_events(), 0);
    assert_eq!(
        kinds(&store).await,
        ["step.started", "action", "step.finished", "item.started"]
    );

    // A lost race is still reported; the pending event is not lost, and is
    // written once, by the next durability point.
    recorder
        .record_deferred(NewEvent::new("log.line", "ana"))
        .await
        .expect("defer");
    let lost = store
        .transition_item(
            &id,
            &[ItemState::Pending],
            &change,
            NewEvent::new("item.started", "ana"),
        )
        .await;
    assert!(
        matches!(lost, Err(StoreError::StateConflict { .. })),
        "a lost compare-and-set is reported: {lost:?}"
    );
    assert_eq!(
        store.pending_events(),
        1,
        "the deferred event waits for the next batch"
    );
    recorder.sync().await.expect("sync");
    assert_eq!(
        kinds(&store).await,
        [
            "step.started",
            "action",
            "step.finished",
            "item.started",
            "log.line"
        ]
    );

    // The item's first `step.started` commits with its `item.started`, right
    // after it, in the same transaction; a lost race writes neither.
    let id2 = ItemId::new("run:L1", "1.items", "K-2");
    recorder
        .record_deferred(NewEvent::new("item.finished", "ana"))
        .await
        .expect("defer");
    let then = [NewEvent::new("step.started", "ana").detail(serde_json::json!({"attempt": 1}))];
    store
        .transition_item_then(
            &id2,
            &[ItemState::Pending],
            &change,
            NewEvent::new("item.started", "ana"),
            &then,
        )
        .await
        .expect("transition with the first step.started");
    assert_eq!(store.pending_events(), 0);
    let lost = store
        .transition_item_then(
            &id2,
            &[ItemState::Pending],
            &change,
            NewEvent::new("item.started", "ana"),
            &then,
        )
        .await;
    assert!(
        matches!(lost, Err(StoreError::StateConflict { .. })),
        "{lost:?}"
    );
    assert_eq!(
        last_three(&store).await,
        [
            ("item.finished".to_string(), None),
            ("item.started".to_string(), Some("K-2".to_string())),
            ("step.started".to_string(), None)
        ],
        "the step.started follows its item.started once, in order"
    );
    assert_eq!(
        store.get_item(&id2).await.expect("item").map(|r| r.state),
        Some(ItemState::InProgress)
    );

    // One item's end and the next one's start: one transaction. The first
    // lost writes nothing; the second lost leaves the first committed.
    let done = {
        let mut c = ItemChange::to(ItemState::Done, "L1");
        c.output = Some(serde_json::json!({"reference": "C-2"}));
        c
    };
    let id3 = ItemId::new("run:L1", "1.items", "K-3");
    let first = finish(&id2, &done);
    let second = start(&id3, &change, &then);
    let (one, two) = store
        .transition_item_pair(&first, &second)
        .await
        .expect("the pair");
    assert_eq!(one.0.state, ItemState::Done);
    assert_eq!(two.expect("the second move").0.state, ItemState::InProgress);
    assert_eq!(
        last_three(&store).await,
        [
            ("item.finished".to_string(), Some("K-2".to_string())),
            ("item.started".to_string(), Some("K-3".to_string())),
            ("step.started".to_string(), None)
        ]
    );
    let before = store.events(None, 0, 1000).await.expect("events").len();
    // Both moves again: K-2 is done now, so the first is lost — nothing written.
    let lost = store.transition_item_pair(&first, &second).await;
    assert!(
        matches!(lost, Err(StoreError::StateConflict { .. })),
        "{lost:?}"
    );
    assert_eq!(
        store.events(None, 0, 1000).await.expect("events").len(),
        before
    );
    // K-3 in progress: finishing it commits even though K-2 cannot start again.
    let finish3 = finish(&id3, &done);
    let restart2 = start(&id2, &change, &then);
    let (one, two) = store
        .transition_item_pair(&finish3, &restart2)
        .await
        .expect("the first move commits alone");
    assert_eq!(one.0.state, ItemState::Done);
    assert!(
        matches!(two, Err(StoreError::StateConflict { .. })),
        "{two:?}"
    );
    assert_eq!(
        store.get_item(&id3).await.expect("item").map(|r| r.state),
        Some(ItemState::Done)
    );
    assert_eq!(
        store.get_item(&id2).await.expect("item").map(|r| r.state),
        Some(ItemState::Done),
        "the lost second move wrote nothing"
    );
    let events = store.events(None, 0, 1000).await.expect("events");
    assert_eq!(events.len(), before + 1, "only K-3's item.finished");

    // A big batch: one flush, the chain intact.
    for i in 0..3000 {
        recorder
            .record_deferred(NewEvent::new("action", "ana").detail(serde_json::json!({ "i": i })))
            .await
            .expect("defer");
    }
    recorder.sync().await.expect("sync");
    let report = clerk::audit::verify(&store).await.expect("verify runs");
    assert!(
        report.is_ok(),
        "chain verifies after group commits: {:?}",
        report.problems()
    );
    assert_eq!(kinds(&store).await.len(), 3012);

    // Closing the store commits what is pending.
    recorder
        .record_deferred(NewEvent::new("last", "ana"))
        .await
        .expect("defer");
    store.close().await;
    let again = open_same(backend, dir.path(), &store).await;
    assert_eq!(kinds(&again).await.last().map(String::as_str), Some("last"));
}

async fn open_same(backend: Backend, dir: &Path, old: &Store) -> Store {
    match backend {
        Backend::Sqlite => Store::open(&format!("sqlite://{}/clerk.db", dir.display()))
            .await
            .expect("reopen"),
        Backend::Postgres => Store::open(old.url()).await.expect("reopen"),
    }
}

#[tokio::test]
async fn deferred_events_commit_in_order_sqlite() {
    store_semantics(Backend::Sqlite).await;
}

#[tokio::test]
async fn deferred_events_commit_in_order_postgres() {
    store_semantics(Backend::Postgres).await;
}

/// End-of-run checkpoints of runs that end at the same time are shared
/// (one checkpoint covers several ends), and still every run's end is
/// covered by a checkpoint taken after it: when `after_run` returns, the
/// checkpoint file holds a checkpoint whose head is at or past that run's
/// last event.
async fn coalesced_checkpoints_cover_every_end(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(backend, dir.path()).await;
    let config = Arc::new(clerk::config::Config::default());
    let file = config.audit.checkpoints_path(dir.path());
    let mut tasks = tokio::task::JoinSet::new();
    const RUNS: usize = 24;
    for i in 0..RUNS {
        let (store, config, ws) = (store.clone(), config.clone(), dir.path().to_path_buf());
        let file = file.clone();
        tasks.spawn(async move {
            let end = store
                .append_event(
                    NewEvent::new("action", "bench")
                        .outcome("ok")
                        .detail(serde_json::json!({ "run": i })),
                )
                .await
                .expect("append the run's last event");
            clerk::audit::checkpoint::after_run(&store, &config, &ws).await;
            let covered = clerk::audit::checkpoint::read_file(&file)
                .expect("read the checkpoint file")
                .iter()
                .map(|(_, cp)| cp.head_id)
                .max()
                .unwrap_or(0);
            assert!(
                covered >= end.id,
                "run {i}: its last event {} is not covered (newest checkpoint head {covered})",
                end.id
            );
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("a run's task");
    }
    let checkpoints = clerk::audit::checkpoint::read_file(&file)
        .expect("read the checkpoint file")
        .len();
    eprintln!("{RUNS} run ends, {checkpoints} checkpoints");
    assert!((1..=RUNS).contains(&checkpoints), "{checkpoints}");
    let report = clerk::audit::verify(&store).await.expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_checkpoints_cover_every_end_sqlite() {
    coalesced_checkpoints_cover_every_end(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_checkpoints_cover_every_end_postgres() {
    coalesced_checkpoints_cover_every_end(Backend::Postgres).await;
}
