//! Benchmark: `clerk audit verify` of 100,000 events with artifacts on
//! SQLite — the chain (format 2, RFC 8785 + SHA-256), the runs table and
//! re-hashing every artifact, and the same without artifacts.
//!
//! The store is built here in a temp folder: 1,000 runs of 100 events each
//! (run.started and run.finished carrying their run state, 98 actions),
//! every 50th event naming a 20 KB artifact file (2,000 files, 40 MB), all
//! chained exactly as clerk chains them, inserted in bulk.
//!
//! Run: `cargo bench --bench verify` (release). Options: `--events N`
//! (default 100000), `--runs N` measurements (default 3), `--mode
//! pipelined|sequential` (default both, interleaved; sequential = verify
//! before it was pipelined). Wall time AND the
//! process's CPU time (user + system, getrusage) are printed: on a shared,
//! loaded machine the CPU time is the figure that does not depend on the
//! neighbours.

use std::time::Instant;

use clerk::audit::{self, AuditEvent, GENESIS_HASH, VerifyOptions};
use clerk::store::Store;
use clerk::store::time::{format_ts, now_micros};
use serde_json::json;

const PER_RUN: usize = 100;
const ARTIFACT_EVERY: usize = 50;
const ARTIFACT_BYTES: usize = 20 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let events = opt("--events", 100_000);
    let runs = opt("--runs", 3);
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(bench(events, runs));
}

async fn bench(n: usize, measurements: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let ws = dir.path();
    let url = format!("sqlite://{}/.clerk/clerk.db", ws.display());
    let store = Store::open(&url).await.expect("open store");
    let t = Instant::now();
    let artifacts = fill(&store, ws, n).await;
    println!(
        "built {n} events ({} runs, {artifacts} artifacts of {} KB) in {:.1} s",
        n / PER_RUN,
        ARTIFACT_BYTES / 1024,
        t.elapsed().as_secs_f64()
    );
    // Interleaved, so both modes see the same neighbours: `sequential` is
    // how verify worked before it was pipelined (read, hash, walk on one
    // thread; artifacts after the walk).
    let cases = [
        ("with artifacts, pipelined", true, false),
        ("with artifacts, sequential (before)", true, true),
        ("without artifacts, pipelined", false, false),
        ("without artifacts, sequential (before)", false, true),
    ];
    let only = args_value("--mode");
    let cases: Vec<_> = cases
        .into_iter()
        .filter(|(_, _, sequential)| {
            only.as_deref()
                .is_none_or(|m| (m == "sequential") == *sequential)
        })
        .collect();
    let mut times = vec![Vec::new(); cases.len()];
    let mut cpu = vec![Vec::new(); cases.len()];
    for _ in 0..measurements {
        for (i, (_, with_artifacts, sequential)) in cases.iter().enumerate() {
            let opts = VerifyOptions {
                artifacts: with_artifacts.then(|| ws.to_path_buf()),
                sequential: *sequential,
                ..Default::default()
            };
            let t = Instant::now();
            let c = cpu_seconds();
            let r = audit::verify_with(&store, &opts).await.expect("verify");
            times[i].push(t.elapsed().as_secs_f64());
            cpu[i].push(cpu_seconds() - c);
            assert!(r.is_ok(), "{:?}", r.problems());
            assert_eq!(r.events as usize, n);
            assert_eq!(r.runs_checked as usize, n / PER_RUN);
            if *with_artifacts {
                assert_eq!(r.artifacts_checked as usize, artifacts);
            }
        }
    }
    for (i, (label, _, _)) in cases.iter().enumerate() {
        let (t, c) = (&mut times[i], &mut cpu[i]);
        t.sort_by(f64::total_cmp);
        c.sort_by(f64::total_cmp);
        println!(
            "verify {n} events {label}: wall median {:.3} s (min {:.3} s, max {:.3} s); CPU median {:.3} s (min {:.3} s); {} runs",
            t[t.len() / 2],
            t[0],
            t[t.len() - 1],
            c[c.len() / 2],
            c[0],
            measurements
        );
    }
}

/// `--mode pipelined|sequential`: measure only one mode (e.g. under callgrind).
fn args_value(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Writes the runs, the chained events and the artifact files; returns how
/// many artifacts.
async fn fill(store: &Store, ws: &std::path::Path, n: usize) -> usize {
    let pool = store.pool();
    let mut prev = GENESIS_HASH.to_string();
    let mut batch: Vec<AuditEvent> = Vec::with_capacity(500);
    let mut artifacts = 0;
    let start = now_micros();
    for i in 0..n {
        let run_no = i / PER_RUN;
        let run = format!("01BENCH{run_no:019}");
        let pos = i % PER_RUN;
        let at = start + chrono::Duration::microseconds(i as i64);
        if pos == 0 {
            let q = store.sql(
                "INSERT INTO runs (id, playbook, status, inputs, queued_at, started_at, \
                 finished_at, actor, attempt) VALUES ($1, 'bench.yaml', 'succeeded', '{}', $2, $2, $3, 'bench', 1)",
            );
            let end = start + chrono::Duration::microseconds((i + PER_RUN - 1) as i64);
            sqlx::query(&q)
                .bind(run.as_str())
                .bind(format_ts(&at))
                .bind(format_ts(&end))
                .execute(pool)
                .await
                .expect("insert run");
        }
        let started =
            format_ts(&(start + chrono::Duration::microseconds((run_no * PER_RUN) as i64)));
        let finished = format_ts(
            &(start + chrono::Duration::microseconds((run_no * PER_RUN + PER_RUN - 1) as i64)),
        );
        let (kind, detail) = match pos {
            0 => (
                "run.started",
                json!({"playbook": "bench.yaml", "run_state": {"status": "running", "started_at": started, "finished_at": null, "error": null}}),
            ),
            p if p == PER_RUN - 1 => (
                "run.finished",
                json!({"status": "succeeded", "run_state": {"status": "succeeded", "started_at": started, "finished_at": finished, "error": null}}),
            ),
            _ => {
                let mut d = json!({"args": {"label": "Permit number", "value": format!("P-{i}")}, "attempt": 1, "chars": 7, "ratio": 0.25});
                if i % ARTIFACT_EVERY == 1 {
                    let rel = format!(".clerk/artifacts/{run}/step-{pos}-attempt1-failure.png");
                    let full = ws.join(&rel);
                    std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
                    let bytes: Vec<u8> = (0..ARTIFACT_BYTES).map(|b| (b * 31 + i) as u8).collect();
                    std::fs::write(&full, &bytes).expect("write artifact");
                    d["artifacts"] =
                        json!([{"path": rel, "sha256": clerk::fsutil::sha256_hex(&bytes)}]);
                    artifacts += 1;
                }
                ("action", d)
            }
        };
        let mut e = AuditEvent {
            id: i as i64 + 1,
            run_id: Some(run),
            seq: pos as i64 + 1,
            at,
            actor: "bench".into(),
            kind: kind.into(),
            step: (kind == "action").then(|| format!("3/item[{pos}]/1")),
            step_name: (kind == "action").then(|| "Enter the case".to_string()),
            action: (kind == "action").then(|| "browser.fill".to_string()),
            target: (kind == "action").then(|| "label=Permit number".to_string()),
            detail,
            outcome: Some("ok".into()),
            duration_ms: Some(12),
            error: None,
            hash_format: audit::format::CURRENT,
            item_key: None,
            prev_hash: prev.clone(),
            hash: String::new(),
        };
        e.hash = e.compute_hash();
        prev = e.hash.clone();
        batch.push(e);
        if batch.len() == 500 || i + 1 == n {
            insert(store, &batch).await;
            batch.clear();
        }
    }
    artifacts
}

async fn insert(store: &Store, batch: &[AuditEvent]) {
    let mut q = String::from(
        "INSERT INTO audit_events (id, run_id, seq, at, actor, kind, step, step_name, action, \
         target, detail, outcome, duration_ms, error, hash_format, prev_hash, hash) VALUES ",
    );
    for i in 0..batch.len() {
        if i > 0 {
            q.push_str(", ");
        }
        let marks: Vec<String> = (1..=17).map(|c| format!("${}", i * 17 + c)).collect();
        q.push_str(&format!("({})", marks.join(", ")));
    }
    let q = store.sql(&q).into_owned();
    let mut query = sqlx::query(&q);
    for e in batch {
        query = query
            .bind(e.id)
            .bind(e.run_id.clone())
            .bind(e.seq)
            .bind(format_ts(&e.at))
            .bind(e.actor.clone())
            .bind(e.kind.clone())
            .bind(e.step.clone())
            .bind(e.step_name.clone())
            .bind(e.action.clone())
            .bind(e.target.clone())
            .bind(e.detail.to_string())
            .bind(e.outcome.clone())
            .bind(e.duration_ms)
            .bind(e.error.clone())
            .bind(e.hash_format)
            .bind(e.prev_hash.clone())
            .bind(e.hash.clone());
    }
    query.execute(store.pool()).await.expect("insert events");
}
