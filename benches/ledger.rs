//! Benchmark (not a timed test) of the work-item ledger's cost on SQLite: a
//! loop of N no-op items (default 10,000) with `checkpoint:` — a ledger row
//! per item, two state changes each written with their audit events — against
//! the same loop without it (audit events only, no ledger rows). Reports
//! ms/item of each and the difference (target: at most 1 ms/item added), and
//! the cost of a resume that skips all N done items (outputs restored).
//!
//! `cargo bench --bench ledger`; CLERK_BENCH_ITEMS=N changes the count,
//! CLERK_BENCH_DIR=/dev/shm puts the stores on a tmpfs (no fsync cost: what
//! is left is the ledger's own work, without the disk's noise).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

const PLAYBOOK: &str = r#"name: ledger-bench
inputs:
  n: { type: number, default: 10 }
  stop: { type: boolean, default: false }
steps:
  - id: items
    for_each: "{{ range(inputs.n | int) }}"
    as: i
    CHECKPOINT
    steps:
      - set: { x: "{{ i }}" }
    output: "{{ i }}"
    save_as: outputs
  - id: stop
    if: "{{ inputs.stop }}"
    fail: stopped after the loop (so that the run can be resumed)
"#;

/// Whether `v` is the list of the N items' outputs (0..N): as is when small,
/// else as the run keeps a big value (docs/performance.md, bounded run
/// state): a marker with the size and SHA-256 of that list's JSON text.
fn outputs_are_the_items(v: &serde_json::Value, n: usize) -> bool {
    use sha2::Digest as _;
    if let Some(list) = v.as_array() {
        return list.len() == n;
    }
    if v.get("omitted") != Some(&serde_json::Value::Bool(true)) {
        return false;
    }
    // The outputs are numbers or their text, depending on the template.
    let numbers = serde_json::json!((0..n).collect::<Vec<_>>()).to_string();
    let texts = serde_json::json!((0..n).map(|i| i.to_string()).collect::<Vec<_>>()).to_string();
    [numbers, texts].iter().any(|t| {
        v.get("bytes").and_then(serde_json::Value::as_u64) == Some(t.len() as u64)
            && v.get("sha256").and_then(serde_json::Value::as_str)
                == Some(hex::encode(sha2::Sha256::digest(t.as_bytes())).as_str())
    })
}

fn temp() -> std::io::Result<tempfile::TempDir> {
    match std::env::var_os("CLERK_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
}

fn items() -> usize {
    std::env::var("CLERK_BENCH_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

async fn engine(ws: &Path) -> anyhow::Result<clerk::engine::Engine> {
    let config = clerk::config::Config::load(ws)?;
    let store =
        clerk::store::Store::open(&format!("sqlite://{}/.clerk/clerk.db", ws.display())).await?;
    Ok(clerk::engine::Engine {
        config: Arc::new(config),
        recorder: clerk::audit::Recorder::new(store, Arc::new(clerk::secrets::redact)),
        secrets: Arc::new(clerk::secrets::Secrets::load(ws)?),
    })
}

struct Measured {
    ms_per_item: f64,
    run_id: String,
}

/// Runs the loop once in a fresh workspace `ws`.
async fn run(ws: &Path, n: usize, ledger: bool, stop: bool) -> anyhow::Result<Measured> {
    let text = PLAYBOOK.replace(
        "CHECKPOINT",
        if ledger {
            "checkpoint: \"{{ i }}\""
        } else {
            "# no checkpoint"
        },
    );
    std::fs::write(ws.join("bench.yaml"), text)?;
    let engine = engine(ws).await?;
    let pb = clerk::playbook::load_file(&ws.join("bench.yaml"), &clerk::actions::Registry)
        .map_err(|d| anyhow::anyhow!("{d}"))?;
    let mut inputs = serde_json::Map::new();
    inputs.insert("n".into(), serde_json::json!(n));
    inputs.insert("stop".into(), serde_json::json!(stop));
    let start = Instant::now();
    let outcome = engine
        .run_now(clerk::engine::RunRequest {
            playbook: Arc::new(pb),
            inputs,
            actor: "bench".into(),
            bot: None,
            workspace: ws.to_path_buf(),
            cancel: Default::default(),
            max_runtime: None,
            progress: false,
        })
        .await?;
    let elapsed = start.elapsed();
    let want = if stop {
        clerk::engine::RunStatus::Failed
    } else {
        clerk::engine::RunStatus::Succeeded
    };
    anyhow::ensure!(
        outcome.status == want,
        "the bench run ended {:?}: {:?}",
        outcome.status,
        outcome.error
    );
    anyhow::ensure!(
        outputs_are_the_items(&outcome.vars["outputs"], n),
        "the loop did not give {n} outputs: {}",
        outcome.vars["outputs"]
    );
    // The ledger holds a row per item exactly when the loop has a checkpoint.
    let counts = engine
        .recorder
        .store()
        .item_counts_for_run(&outcome.id)
        .await?;
    let expected = if ledger { n as i64 } else { 0 };
    anyhow::ensure!(
        counts.done == expected,
        "expected {expected} done ledger rows, found {}",
        counts.done
    );
    engine.recorder.store().close().await;
    Ok(Measured {
        ms_per_item: elapsed.as_secs_f64() * 1000.0 / n as f64,
        run_id: outcome.id,
    })
}

/// Resumes `run_id` (whose N items are all done): ms per skipped item.
async fn resume(ws: &Path, n: usize, run_id: &str) -> anyhow::Result<f64> {
    let engine = engine(ws).await?;
    let start = Instant::now();
    let outcome = engine
        .resume(
            run_id,
            clerk::engine::ResumeOptions {
                actor: "bench".into(),
                workspace: ws.to_path_buf(),
                ..Default::default()
            },
        )
        .await?;
    let elapsed = start.elapsed();
    anyhow::ensure!(
        outputs_are_the_items(&outcome.vars["outputs"], n),
        "the resume did not restore {n} outputs: {}",
        outcome.vars["outputs"]
    );
    anyhow::ensure!(
        outcome.items.skipped == n as i64,
        "expected {n} skipped items, got {:?}",
        outcome.items
    );
    engine.recorder.store().close().await;
    Ok(elapsed.as_secs_f64() * 1000.0 / n as f64)
}

fn main() -> anyhow::Result<()> {
    let n = items();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // A short warm-up (SQLite page cache, template compilation).
        let warm = temp()?;
        run(warm.path(), 200, true, false).await?;

        let plain = temp()?;
        let without = run(plain.path(), n, false, false).await?;
        let ledgered = temp()?;
        let with = run(ledgered.path(), n, true, true).await?;
        let skip = resume(ledgered.path(), n, &with.run_id).await?;
        let added = with.ms_per_item - without.ms_per_item;
        println!("ledger benchmark, SQLite, {n} no-op items");
        println!(
            "  without checkpoint (no ledger):  {:.3} ms/item",
            without.ms_per_item
        );
        println!(
            "  with checkpoint (ledger):        {:.3} ms/item",
            with.ms_per_item
        );
        println!(
            "  added by the ledger:             {added:.3} ms/item (target <= 1 ms/item: {})",
            if added <= 1.0 { "met" } else { "NOT met" }
        );
        println!("  resume skipping {n} done items:  {skip:.3} ms/item");
        anyhow::Ok(())
    })
}
