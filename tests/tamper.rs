//! The tamper suite: each way an operator (or an intruder with database
//! access) could falsify the audit trail, done for real with SQL and file
//! operations on a real SQLite file AND the real PostgreSQL (a fresh
//! database per test), and each one caught — and named — by `audit verify`
//! (with the signed checkpoint file where a hash chain alone cannot see it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clerk::audit::config::AuditConfig;
use clerk::audit::{self, AuditEvent, NewEvent, VerifyOptions, VerifyReport, checkpoint, keys};
use clerk::store::{Backend, NewRun, RunChange, Store};
use serde_json::json;

const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A workspace (key, artifacts, checkpoint file) and a store with three
/// finished runs, a checkpoint after each.
struct Fixture {
    store: Store,
    dir: tempfile::TempDir,
    pg_name: Option<String>,
    config: AuditConfig,
    runs: Vec<String>,
    /// (event id, path relative to the workspace) of each artifact.
    artifacts: Vec<(i64, String)>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
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
                })
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

impl Fixture {
    async fn new(backend: Backend) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (url, pg_name) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}/.clerk/clerk.db", dir.path().display()),
                None,
            ),
            Backend::Postgres => {
                let admin = admin_pool().await.unwrap_or_else(|e| {
                    panic!("PostgreSQL is required at {PG_ADMIN_URL} for this test: {e}")
                });
                let name = format!(
                    "clerk_tamper_{}",
                    ulid::Ulid::new().to_string().to_lowercase()
                );
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .unwrap();
                admin.close().await;
                (
                    format!("postgres://postgres@127.0.0.1:5432/{name}"),
                    Some(name),
                )
            }
        };
        let store = Store::open(&url).await.unwrap();
        assert_eq!(store.backend(), backend);
        let config = AuditConfig::default();
        keys::keygen(&config.key_path(dir.path()), false).unwrap();
        let mut f = Fixture {
            store,
            dir,
            pg_name,
            config,
            runs: Vec::new(),
            artifacts: Vec::new(),
        };
        for (i, status) in ["succeeded", "failed", "succeeded"].iter().enumerate() {
            f.add_run(i, status).await;
        }
        f
    }

    fn ws(&self) -> &Path {
        self.dir.path()
    }

    fn checkpoints(&self) -> PathBuf {
        self.config.checkpoints_path(self.ws())
    }

    /// A run: run.started, six actions (the fourth saves a screenshot),
    /// run.finished, then a checkpoint.
    async fn add_run(&mut self, n: usize, status: &str) {
        let id = ulid::Ulid::new().to_string();
        let run = NewRun {
            id: id.clone(),
            bot: None,
            playbook: "playbooks/permits.yaml".into(),
            inputs: json!({"n": n}),
            scheduled_for: None,
            actor: "ana".into(),
            attempt: 1,
            status: "running".into(),
            ..Default::default()
        };
        self.store
            .create_run(&run, NewEvent::new("run.started", "ana").detail(json!({})))
            .await
            .unwrap()
            .unwrap();
        for a in 1..=6 {
            let mut e = NewEvent::new("action", "ana")
                .run(&id)
                .step(format!("3/item[{a}]/1"), Some("Enter the case"))
                .action("browser.fill")
                .target("label=Permit number")
                .outcome("ok")
                .duration_ms(12)
                .error("none")
                .detail(json!({"args": {"value": format!("P-{n}-{a}")}, "attempt": 1}));
            if a == 4 {
                let rel = format!(".clerk/artifacts/{id}/step-3-item4-1-attempt1-failure.png");
                let full = self.ws().join(&rel);
                std::fs::create_dir_all(full.parent().unwrap()).unwrap();
                let bytes = format!("png of run {n}").into_bytes();
                std::fs::write(&full, &bytes).unwrap();
                let sha = clerk::fsutil::sha256_hex(&bytes);
                e = e.detail(json!({"artifacts": [{"path": rel, "sha256": sha}]}));
                let stored = self.store.append_event(e).await.unwrap();
                self.artifacts.push((stored.id, rel));
                continue;
            }
            self.store.append_event(e).await.unwrap();
        }
        let mut ev = NewEvent::new("run.finished", "ana")
            .run(&id)
            .outcome(if status == "succeeded" {
                "ok"
            } else {
                "failed"
            })
            .detail(json!({"status": status}));
        let mut change = RunChange {
            status: Some(status.into()),
            finished_at: Some(chrono::Utc::now()),
            ..Default::default()
        };
        if status == "failed" {
            ev = ev.error("the portal rejected permit P-1-6");
            change.error = Some("the portal rejected permit P-1-6".into());
        }
        self.store
            .transition_run(&id, &[], change, ev)
            .await
            .unwrap();
        checkpoint::write(
            &self.store,
            &self.config,
            self.ws(),
            "clerk",
            "run.finished",
        )
        .await
        .unwrap()
        .expect("a checkpoint was written");
        self.runs.push(id);
    }

    fn opts(&self) -> VerifyOptions {
        VerifyOptions {
            artifacts: Some(self.ws().to_path_buf()),
            checkpoints: Some(self.checkpoints()),
            pubkey: keys::load_public(&self.config.key_path(self.ws())).unwrap(),
            ..Default::default()
        }
    }

    async fn verify(&self) -> VerifyReport {
        audit::verify_with(&self.store, &self.opts()).await.unwrap()
    }

    async fn exec(&self, q: &str) {
        sqlx::query(&self.store.sql(q))
            .execute(self.store.pool())
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
    }

    async fn events(&self) -> Vec<AuditEvent> {
        self.store.events(None, 0, 100_000).await.unwrap()
    }

    async fn last_id(&self) -> i64 {
        self.events().await.last().unwrap().id
    }

    /// What a capable forger does after editing: rewrites the whole chain
    /// with ids renumbered from 1 and every hash recomputed by the public
    /// rules (the signatures in checkpoint events cannot be redone).
    async fn rewrite_chain(&self, mut events: Vec<AuditEvent>) {
        let mut prev = audit::GENESIS_HASH.to_string();
        for (i, e) in events.iter_mut().enumerate() {
            e.id = i as i64 + 1;
            e.prev_hash = prev.clone();
            e.hash = e.compute_hash();
            prev = e.hash.clone();
        }
        self.exec("DELETE FROM audit_events").await;
        for e in &events {
            let q = self.store.sql(
                "INSERT INTO audit_events (id, run_id, seq, at, actor, kind, step, step_name, \
                 action, target, detail, outcome, duration_ms, error, hash_format, prev_hash, hash) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
            );
            sqlx::query(&q)
                .bind(e.id)
                .bind(e.run_id.as_deref())
                .bind(e.seq)
                .bind(clerk::store::time::format_ts(&e.at))
                .bind(e.actor.as_str())
                .bind(e.kind.as_str())
                .bind(e.step.as_deref())
                .bind(e.step_name.as_deref())
                .bind(e.action.as_deref())
                .bind(e.target.as_deref())
                .bind(e.detail.to_string())
                .bind(e.outcome.as_deref())
                .bind(e.duration_ms)
                .bind(e.error.as_deref())
                .bind(e.hash_format)
                .bind(e.prev_hash.as_str())
                .bind(e.hash.as_str())
                .execute(self.store.pool())
                .await
                .unwrap();
        }
    }
}

fn assert_ok(r: &VerifyReport) {
    assert!(r.is_ok(), "expected ok, got {:#?}", r.problems());
}

fn first_bad(r: &VerifyReport) -> (i64, String) {
    let b = r
        .first_bad
        .clone()
        .unwrap_or_else(|| panic!("verify should name a bad event: {r:#?}"));
    (b.id, b.reason)
}

fn bad_checkpoint(r: &VerifyReport) -> String {
    r.first_bad_checkpoint
        .clone()
        .unwrap_or_else(|| panic!("verify should name a checkpoint: {r:#?}"))
        .reason
}

// ------------------------------------------------------------------ cases

async fn untouched_store_verifies(f: Fixture) {
    let r = f.verify().await;
    assert_ok(&r);
    // 3 runs × (started + 6 actions + finished + checkpoint)
    assert_eq!(r.events, 27);
    assert_eq!(r.artifacts_checked, 3);
    assert_eq!(r.runs_checked, 3);
    assert_eq!(r.checkpoints_checked, 3);
    assert_eq!(r.unconfirmed_events, Some(0));
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    // The events of a fresh store are format 2 and carry the run's state.
    let evs = f.events().await;
    assert!(evs.iter().all(|e| e.hash_format == 2));
    assert_eq!(evs[0].detail["run_state"]["status"], "running");
    assert_eq!(evs[7].detail["run_state"]["status"], "succeeded");
}

/// Every column of one event, changed (and changed back) in turn.
async fn update_of_any_column(f: Fixture) {
    assert_ok(&f.verify().await);
    // Event 12: an action of the second run (all columns set).
    let edits: &[(&str, &str, &str)] = &[
        (
            "run_id",
            "run_id = run_id || 'X'",
            "run_id = substr(run_id, 1, 26)",
        ),
        ("seq", "seq = seq + 1000", "seq = seq - 1000"),
        (
            "at",
            "at = replace(at, 'Z', '1Z')",
            "at = replace(at, '1Z', 'Z')",
        ),
        ("actor", "actor = 'mallory'", "actor = 'ana'"),
        ("kind", "kind = 'action2'", "kind = 'action'"),
        (
            "step",
            "step = step || '9'",
            "step = substr(step, 1, length(step) - 1)",
        ),
        (
            "step_name",
            "step_name = 'Other'",
            "step_name = 'Enter the case'",
        ),
        (
            "action",
            "action = 'browser.click'",
            "action = 'browser.fill'",
        ),
        (
            "target",
            "target = 'label=Fee'",
            "target = 'label=Permit number'",
        ),
        (
            "detail",
            "detail = replace(detail, 'P-1', 'P-9')",
            "detail = replace(detail, 'P-9', 'P-1')",
        ),
        ("outcome", "outcome = 'failed'", "outcome = 'ok'"),
        ("duration_ms", "duration_ms = 99", "duration_ms = 12"),
        ("error", "error = 'x'", "error = 'none'"),
        ("hash_format", "hash_format = 1", "hash_format = 2"),
        (
            "prev_hash",
            "prev_hash = '0000000000000000000000000000000000000000000000000000000000000001'",
            "",
        ),
        (
            "hash",
            "hash = '0000000000000000000000000000000000000000000000000000000000000001'",
            "",
        ),
        ("id", "id = 1000", "id = 12"),
    ];
    for (col, edit, undo) in edits {
        let before = f.events().await.into_iter().find(|e| e.id == 12).unwrap();
        f.exec(&format!("UPDATE audit_events SET {edit} WHERE id = 12"))
            .await;
        let r = f.verify().await;
        let (id, reason) = first_bad(&r);
        if *col == "id" {
            assert_eq!(id, 13, "{col}: {reason}");
            assert_eq!(reason, "event 13: previous event 12 is missing (deleted?)");
        } else if *col == "hash" {
            assert_eq!(id, 12, "{col}: {reason}");
        } else {
            assert_eq!(id, 12, "{col}: {reason}");
            assert!(reason.contains("hash does not match"), "{col}: {reason}");
        }
        if undo.is_empty() {
            let col_value = if *col == "hash" {
                &before.hash
            } else {
                &before.prev_hash
            };
            f.exec(&format!(
                "UPDATE audit_events SET {col} = '{col_value}' WHERE id = 12"
            ))
            .await;
        } else {
            let at = if *col == "id" { 1000 } else { 12 };
            f.exec(&format!("UPDATE audit_events SET {undo} WHERE id = {at}"))
                .await;
        }
        assert_ok(&f.verify().await);
    }
}

async fn delete_in_the_middle(f: Fixture) {
    f.exec("DELETE FROM audit_events WHERE id = 14").await;
    let r = f.verify().await;
    assert_eq!(
        first_bad(&r),
        (
            15,
            "event 15: previous event 14 is missing (deleted?)".into()
        )
    );
}

async fn delete_of_the_last_5_events(f: Fixture) {
    let last = f.last_id().await;
    f.exec(&format!("DELETE FROM audit_events WHERE id > {}", last - 5))
        .await;
    let r = f.verify().await;
    assert!(r.first_bad.is_none(), "the chain itself still links");
    let why = bad_checkpoint(&r);
    assert!(
        why.contains(&format!("event {}", last - 1))
            && why.contains(&format!("it ends at event {}", last - 5))
            && why.contains("tail truncated"),
        "{why}"
    );
    // The last run's end was in the tail: the runs table disagrees too.
    assert!(
        r.bad_runs
            .iter()
            .any(|b| b.run == f.runs[2]
                && b.reason.contains("status is succeeded in runs but running")),
        "{:?}",
        r.bad_runs
    );
}

async fn delete_of_one_runs_events(f: Fixture) {
    let run = &f.runs[1];
    f.exec(&format!("DELETE FROM audit_events WHERE run_id = '{run}'"))
        .await;
    let r = f.verify().await;
    let (id, reason) = first_bad(&r);
    assert_eq!(id, 18, "{reason}");
    assert_eq!(
        reason,
        "event 18: previous events 10..17 are missing (deleted?)"
    );
    assert!(
        r.bad_runs
            .iter()
            .any(|b| &b.run == run && b.reason.contains("no event of it is in the chain")),
        "{:?}",
        r.bad_runs
    );
}

/// The run removed and the chain re-linked and re-numbered around it: only
/// the signed checkpoints can tell.
async fn removed_run_with_rebuilt_chain(f: Fixture) {
    let run = f.runs[1].clone();
    let keep: Vec<AuditEvent> = f
        .events()
        .await
        .into_iter()
        .filter(|e| {
            e.run_id.as_deref() != Some(run.as_str()) && (e.kind != "audit.checkpoint" || e.id == 9)
        })
        .collect();
    f.rewrite_chain(keep).await;
    f.exec(&format!("DELETE FROM runs WHERE id = '{run}'"))
        .await;
    let r = f.verify().await;
    assert!(r.first_bad.is_none(), "{:?}", r.first_bad);
    assert!(r.bad_runs.is_empty(), "{:?}", r.bad_runs);
    let why = bad_checkpoint(&r);
    assert!(
        why.contains("line 2")
            && why.contains("event 17")
            && why.contains("does not match the store"),
        "{why}"
    );
}

/// A forged event slipped in between events 12 and 13 (later ids shifted).
async fn insert_of_a_forged_event(f: Fixture) {
    let evs = f.events().await;
    let mut forged = evs[11].clone();
    forged.id = 13;
    forged.seq = 0;
    forged.run_id = None;
    forged.kind = "admin.note".into();
    forged.target = Some("label=Forged".into());
    forged.prev_hash = evs[11].hash.clone();
    forged.hash = forged.compute_hash();
    f.exec("UPDATE audit_events SET id = id + 1000 WHERE id >= 13")
        .await;
    f.exec("UPDATE audit_events SET id = id - 999 WHERE id >= 1013")
        .await;
    let q = format!(
        "INSERT INTO audit_events (id, run_id, seq, at, actor, kind, step, step_name, action, \
         target, detail, outcome, duration_ms, error, hash_format, prev_hash, hash) \
         SELECT 13, NULL, 0, at, actor, 'admin.note', step, step_name, action, 'label=Forged', \
         detail, outcome, duration_ms, error, hash_format, '{}', '{}' FROM audit_events WHERE id = 12",
        forged.prev_hash, forged.hash
    );
    f.exec(&q).await;
    let r = f.verify().await;
    let (id, reason) = first_bad(&r);
    assert_eq!(id, 14, "{reason}");
    assert!(reason.contains("hash does not match"), "{reason}");
}

/// A forged action appended to a finished run, hashed correctly.
async fn appending_a_forged_event_at_the_end(f: Fixture) {
    let evs = f.events().await;
    let head = evs.last().unwrap();
    let mut forged = evs[3].clone(); // an action of run 1
    forged.id = head.id + 1;
    forged.seq = 9;
    forged.at = chrono::Utc::now();
    forged.target = Some("label=Refund".into());
    forged.prev_hash = head.hash.clone();
    forged.hash = forged.compute_hash();
    let q = format!(
        "INSERT INTO audit_events (id, run_id, seq, at, actor, kind, step, step_name, action, \
         target, detail, outcome, duration_ms, error, hash_format, prev_hash, hash) \
         SELECT {}, run_id, 9, '{}', actor, kind, step, step_name, action, 'label=Refund', \
         detail, outcome, duration_ms, error, hash_format, '{}', '{}' FROM audit_events WHERE id = 4",
        forged.id,
        clerk::store::time::format_ts(&forged.at),
        forged.prev_hash,
        forged.hash
    );
    f.exec(&q).await;
    let r = f.verify().await;
    let (id, reason) = first_bad(&r);
    assert_eq!(id, forged.id, "{reason}");
    assert!(
        reason.contains(&format!(
            "action event of run {} comes after the run ended at event 8",
            f.runs[0]
        )),
        "{reason}"
    );
}

async fn run_status_changed_in_runs(f: Fixture) {
    let run = &f.runs[1];
    f.exec(&format!(
        "UPDATE runs SET status = 'succeeded', error = NULL WHERE id = '{run}'"
    ))
    .await;
    let r = f.verify().await;
    assert!(r.first_bad.is_none());
    assert_eq!(r.bad_runs.len(), 1, "{:?}", r.bad_runs);
    assert_eq!(&r.bad_runs[0].run, run);
    assert_eq!(
        r.bad_runs[0].reason,
        format!(
            "run {run}: status is succeeded in runs but failed in the chain; error differs from the chain (event 17) (runs table edited?)"
        )
    );
}

/// One event edited, then every hash after it recomputed.
async fn whole_chain_recomputed_after_an_edit(f: Fixture) {
    let mut evs = f.events().await;
    evs[11].target = Some("label=Fee".into());
    f.rewrite_chain(evs.clone()).await;
    let r = f.verify().await;
    // The checkpoint event after run 2 still names the old head; its
    // signature cannot be redone without the key.
    let (id, reason) = first_bad(&r);
    assert_eq!(id, 18, "{reason}");
    assert!(reason.contains("chain recomputed"), "{reason}");
    let why = bad_checkpoint(&r);
    assert!(why.contains("line 2") && why.contains("event 17"), "{why}");

    // Also with the chained checkpoints dropped: the file still catches it.
    let keep: Vec<AuditEvent> = evs
        .into_iter()
        .filter(|e| e.kind != "audit.checkpoint")
        .collect();
    f.rewrite_chain(keep).await;
    let r = f.verify().await;
    assert!(r.first_bad.is_none(), "{:?}", r.first_bad);
    let why = bad_checkpoint(&r);
    assert!(
        why.contains("line 2") && why.contains("does not match the store"),
        "{why}"
    );
}

/// The database replaced by a copy taken after the second run.
async fn database_replaced_by_an_older_copy(mut f: Fixture) {
    // Start over with a store that has two runs, copy it, add a third.
    let old = f.ws().join("old.db");
    let old_events = 18;
    match f.store.backend() {
        Backend::Sqlite => {
            f.exec("DELETE FROM audit_events WHERE id > 18").await;
            let run = f.runs[2].clone();
            f.exec(&format!("DELETE FROM runs WHERE id = '{run}'"))
                .await;
            let q = format!("VACUUM INTO '{}'", old.display());
            f.exec(&q).await;
            let path = f.ws().join(".clerk/clerk.db");
            f.store.close().await;
            // The "older copy" is put in place of the live database.
            std::fs::copy(&old, &path).unwrap();
            let _ = std::fs::remove_file(f.ws().join(".clerk/clerk.db-wal"));
            let _ = std::fs::remove_file(f.ws().join(".clerk/clerk.db-shm"));
            f.store = Store::open(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
        }
        Backend::Postgres => {
            // Restoring yesterday's dump: the rows written since are gone.
            f.exec("DELETE FROM audit_events WHERE id > 18").await;
            let run = f.runs[2].clone();
            f.exec(&format!("DELETE FROM runs WHERE id = '{run}'"))
                .await;
        }
    }
    let r = f.verify().await;
    assert!(r.first_bad.is_none(), "{:?}", r.first_bad);
    assert!(r.bad_runs.is_empty(), "{:?}", r.bad_runs);
    assert_eq!(r.events, old_events);
    let why = bad_checkpoint(&r);
    assert!(
        why.contains("line 3") && why.contains("event 26") && why.contains("older copy"),
        "{why}"
    );
}

async fn artifact_changed(f: Fixture) {
    let (event, rel) = f.artifacts[1].clone();
    let path = f.ws().join(&rel);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.push(b'!');
    std::fs::write(&path, bytes).unwrap();
    let r = f.verify().await;
    assert!(r.first_bad.is_none());
    assert_eq!(r.bad_artifacts.len(), 1, "{:?}", r.bad_artifacts);
    let b = &r.bad_artifacts[0];
    assert_eq!((b.event, b.path.as_str()), (event, rel.as_str()));
    assert!(
        b.reason.starts_with(&format!(
            "event {event}: artifact {rel} has changed (sha256 "
        )),
        "{}",
        b.reason
    );
    // --no-artifacts skips the check.
    let mut opts = f.opts();
    opts.artifacts = None;
    assert_ok(&audit::verify_with(&f.store, &opts).await.unwrap());
}

async fn artifact_deleted(f: Fixture) {
    let (event, rel) = f.artifacts[2].clone();
    std::fs::remove_file(f.ws().join(&rel)).unwrap();
    let r = f.verify().await;
    assert_eq!(r.bad_artifacts.len(), 1, "{:?}", r.bad_artifacts);
    assert_eq!(
        r.bad_artifacts[0].reason,
        format!("event {event}: artifact {rel} is missing")
    );
}

/// A checkpoint line edited to match a rebuilt chain: its signature fails.
async fn checkpoint_file_edited(f: Fixture) {
    let text = std::fs::read_to_string(f.checkpoints()).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut cp: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    cp["head_hash"] = json!("0".repeat(64));
    lines[1] = cp.to_string();
    std::fs::write(f.checkpoints(), lines.join("\n") + "\n").unwrap();
    let why = bad_checkpoint(&f.verify().await);
    assert!(
        why.contains("line 2") && why.contains("signature that does not verify"),
        "{why}"
    );
}

/// Archive the first two runs: the store still verifies (from the archived
/// head), the archive file verifies offline, and tampering with either is
/// caught.
async fn archive_keeps_the_proof(f: Fixture) {
    let evs = f.events().await;
    // Events up to the second run's checkpoint (18) are "old".
    let before = evs[18].at;
    let out = f.ws().join("archive/2025.jsonl");
    let s = audit::archive::archive(&f.store, &f.config, f.ws(), before, &out, "auditor")
        .await
        .unwrap();
    assert_eq!((s.from_id, s.through_id, s.events), (1, 18, 18));
    assert!(s.signed);
    let r = f.verify().await;
    assert_ok(&r);
    assert_eq!(r.archived_through, Some(18));
    assert_eq!(r.events, 10, "9 events of run 3 + audit.archived");
    assert_eq!(
        r.runs_checked, 3,
        "archived runs still checked against the marker"
    );
    // The archive verifies offline, with the checkpoints it covers.
    let offline = audit::verify_export(&out, &f.opts()).unwrap();
    assert_ok(&offline);
    assert_eq!(offline.events, 18);
    // A status flip of an archived run is still caught.
    let run = &f.runs[0];
    f.exec(&format!(
        "UPDATE runs SET status = 'failed' WHERE id = '{run}'"
    ))
    .await;
    let r = f.verify().await;
    assert!(r.bad_runs.iter().any(|b| &b.run == run), "{:?}", r.bad_runs);
    // An edited archive fails.
    let text = std::fs::read_to_string(&out)
        .unwrap()
        .replace("P-0-2", "P-0-7");
    std::fs::write(&out, text).unwrap();
    let offline = audit::verify_export(&out, &f.opts()).unwrap();
    assert!(offline.first_bad.is_some(), "{offline:?}");
}

/// Declares `mod $name { sqlite(), postgres() }`, each on a fresh fixture.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Fixture::new(clerk::store::Backend::Sqlite).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Fixture::new(clerk::store::Backend::Postgres).await).await;
            }
        }
    )*};
}

both_backends!(
    untouched_store_verifies,
    update_of_any_column,
    delete_in_the_middle,
    delete_of_the_last_5_events,
    delete_of_one_runs_events,
    removed_run_with_rebuilt_chain,
    insert_of_a_forged_event,
    appending_a_forged_event_at_the_end,
    run_status_changed_in_runs,
    whole_chain_recomputed_after_an_edit,
    database_replaced_by_an_older_copy,
    artifact_changed,
    artifact_deleted,
    checkpoint_file_edited,
    archive_keeps_the_proof,
);

/// SQLite only (its columns take any type): a value of the wrong type in
/// one row — a number where text belongs, a BLOB, text in an integer
/// column. verify reads SQLite pages as one JSON array built by SQLite; a
/// page holding such a row is read again row by row, so the bad row is
/// named and every other row is still checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_of_the_wrong_type_is_named_sqlite() {
    let f = Fixture::new(Backend::Sqlite).await;
    assert_ok(&f.verify().await);
    for (edit, column) in [
        ("actor = 42", "actor"),
        ("actor = X'00ff'", "actor"),
        ("seq = 'seven'", "seq"),
        ("detail = X'7b7d'", "detail"),
    ] {
        let before: String = sqlx::query_scalar::<_, String>(
            "SELECT actor || '|' || seq || '|' || detail FROM audit_events WHERE id = 12",
        )
        .fetch_one(f.store.pool())
        .await
        .unwrap();
        f.exec(&format!("UPDATE audit_events SET {edit} WHERE id = 12"))
            .await;
        let r = f.verify().await;
        assert!(!r.is_ok(), "{edit}: verify said ok");
        let (id, reason) = first_bad(&r);
        assert_eq!(id, 12, "{edit}: {reason}");
        // The rows after it were still read and checked.
        assert_eq!(r.events, 27, "{edit}: {r:#?}");
        // Put the row back exactly (the detail as it was, for the hash).
        let parts: Vec<&str> = before.splitn(3, '|').collect();
        let restore = match column {
            "detail" => format!("detail = '{}'", parts[2].replace('\'', "''")),
            "seq" => format!("seq = {}", parts[1]),
            _ => format!("actor = '{}'", parts[0].replace('\'', "''")),
        };
        f.exec(&format!("UPDATE audit_events SET {restore} WHERE id = 12"))
            .await;
        assert_ok(&f.verify().await);
    }
}
