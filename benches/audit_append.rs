//! Benchmark (not a timed test) of appending to the audit trail — issue 13
//! §2 and §5 `audit-append` — on SQLite and PostgreSQL:
//!
//! - **single**: one event per transaction (`Recorder::record`, what every
//!   event cost before group commit): the peer the others are compared to;
//! - **batched, sync every B**: events deferred (`Recorder::record_deferred`)
//!   and made durable every B events (`Recorder::sync`), as the engine does
//!   before each action with an outside effect — B = 7 is a form record
//!   (about 7 events per click), B = 64 a short run of reads, B = ∞ a loop of
//!   effect-free steps (flushed by count, 1,024);
//! - **in-action overhead**: what one `record_deferred` costs the action
//!   that records it (masking + queueing, no I/O), µs/event;
//! - **engine**: `clerk run` (in process) of a loop of N `log` steps, events
//!   per second for the whole run (the baseline: 10,004 events in
//!   3.7 s, ~370 µs/event).
//!
//! `cargo bench --bench audit_append`. CLERK_BENCH_EVENTS=N (default 20,000
//! batched, N/10 single), CLERK_BENCH_PG=URL of an admin database
//! (default `postgres://postgres@127.0.0.1:5432/postgres`; `off` skips
//! PostgreSQL). Targets: ≥ 20,000 events/s on SQLite with the durability
//! rule, in-action overhead ≤ 50 µs/event.

use std::sync::Arc;
use std::time::Instant;

use clerk::audit::{NewEvent, Recorder};
use clerk::store::Store;
use serde_json::json;

fn events() -> usize {
    std::env::var("CLERK_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// An event shaped like the engine's `action` event of a `browser.fill`.
fn event(run: &str, i: usize) -> NewEvent {
    NewEvent::new("action", "bench")
        .run(run)
        .step(
            format!("3/item[{}]/2", i / 7 + 1),
            Some("Enter the request"),
        )
        .action("browser.fill")
        .target("label=Request id")
        .outcome("ok")
        .duration_ms(4)
        .detail(json!({
            "args": { "label": "Request id", "value": format!("PR-2026-{i:04}") },
            "attempt": 1,
            "value": format!("PR-2026-{i:04}"),
        }))
}

async fn recorder(store: &Store) -> Recorder {
    Recorder::new(store.clone(), Arc::new(clerk::secrets::redact))
}

struct Figure {
    label: String,
    events: usize,
    secs: f64,
}

impl Figure {
    fn per_s(&self) -> f64 {
        self.events as f64 / self.secs
    }
    fn us(&self) -> f64 {
        self.secs * 1e6 / self.events as f64
    }
}

async fn single(store: &Store, n: usize) -> anyhow::Result<Figure> {
    let rec = recorder(store).await;
    let run = ulid::Ulid::new().to_string();
    let start = Instant::now();
    for i in 0..n {
        rec.record(event(&run, i)).await?;
    }
    Ok(Figure {
        label: "single (1 event / commit)".into(),
        events: n,
        secs: start.elapsed().as_secs_f64(),
    })
}

/// Deferred appends made durable every `every` events (`None`: only by the
/// store's own count and age limits, then one final sync).
async fn batched(store: &Store, n: usize, every: Option<usize>) -> anyhow::Result<(Figure, f64)> {
    let rec = recorder(store).await;
    let run = ulid::Ulid::new().to_string();
    let mut in_action = 0.0f64;
    let start = Instant::now();
    for i in 0..n {
        let e = event(&run, i);
        let t = Instant::now();
        rec.record_deferred(e).await?;
        in_action += t.elapsed().as_secs_f64();
        if let Some(b) = every
            && (i + 1) % b == 0
        {
            rec.sync().await?;
        }
    }
    rec.sync().await?;
    let label = match every {
        Some(b) => format!("batched, sync every {b}"),
        None => "batched, effect-free (count/age flush)".into(),
    };
    Ok((
        Figure {
            label,
            events: n,
            secs: start.elapsed().as_secs_f64(),
        },
        in_action,
    ))
}

/// The in-action cost of `record_deferred` alone: measured with the
/// flushes outside the timed calls (every 1,000 events).
async fn in_action_overhead(store: &Store, n: usize) -> anyhow::Result<f64> {
    let rec = recorder(store).await;
    let run = ulid::Ulid::new().to_string();
    let mut total = 0.0;
    for i in 0..n {
        let e = event(&run, i);
        let t = Instant::now();
        rec.record_deferred(e).await?;
        total += t.elapsed().as_secs_f64();
        if (i + 1) % 1000 == 0 {
            rec.sync().await?;
        }
    }
    rec.sync().await?;
    Ok(total * 1e6 / n as f64)
}

/// `clerk run` in process: a loop of `steps` `log` steps; returns events of
/// the run and seconds.
async fn engine_loop(url: &str, steps: usize) -> anyhow::Result<(usize, f64)> {
    let ws = tempfile::tempdir()?;
    std::fs::write(
        ws.path().join("bench.yaml"),
        "name: log-loop\ninputs:\n  n: { type: number, default: 10 }\nsteps:\n  - for_each: \"{{ range(inputs.n | int) }}\"\n    as: i\n    steps:\n      - log: \"step {{ i }}\"\n",
    )?;
    let store = Store::open(url).await?;
    let engine = clerk::engine::Engine {
        config: Arc::new(clerk::config::Config::load(ws.path())?),
        recorder: Recorder::new(store.clone(), Arc::new(clerk::secrets::redact)),
        secrets: Arc::new(clerk::secrets::Secrets::load(ws.path())?),
    };
    let pb = clerk::playbook::load_file(&ws.path().join("bench.yaml"), &clerk::actions::Registry)
        .map_err(|d| anyhow::anyhow!("{d}"))?;
    let mut inputs = serde_json::Map::new();
    inputs.insert("n".into(), json!(steps));
    let start = Instant::now();
    let outcome = engine
        .run_now(clerk::engine::RunRequest {
            playbook: Arc::new(pb),
            inputs,
            actor: "bench".into(),
            bot: None,
            workspace: ws.path().to_path_buf(),
            cancel: Default::default(),
            max_runtime: None,
            progress: false,
        })
        .await?;
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        outcome.status == clerk::engine::RunStatus::Succeeded,
        "the loop run ended {:?}: {:?}",
        outcome.status,
        outcome.error
    );
    let mut count = 0;
    let mut after = 0;
    loop {
        let page = store.events(Some(&outcome.id), after, 5000).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        count += page.len();
    }
    store.close().await;
    Ok((count, secs))
}

async fn backend(name: &str, url: &str, n: usize) -> anyhow::Result<()> {
    let store = Store::open(url).await?;
    println!("\n== {name} ==");
    let single = single(&store, (n / 10).max(100)).await?;
    let mut rows = vec![single];
    let mut overheads = Vec::new();
    for every in [Some(7), Some(64), None] {
        let (f, in_action) = batched(&store, n, every).await?;
        overheads.push(in_action * 1e6 / n as f64);
        rows.push(f);
    }
    let base = rows[0].per_s();
    println!(
        "{:<40} {:>10} {:>12} {:>10} {:>10}",
        "mode", "events", "events/s", "µs/event", "× single"
    );
    for f in &rows {
        println!(
            "{:<40} {:>10} {:>12.0} {:>10.1} {:>10.1}",
            f.label,
            f.events,
            f.per_s(),
            f.us(),
            f.per_s() / base
        );
    }
    let overhead = in_action_overhead(&store, n).await?;
    println!(
        "in-action overhead of record_deferred: {overhead:.1} µs/event (target ≤ 50); \
         inside the batched runs above: {}",
        overheads
            .iter()
            .map(|o| format!("{o:.1}"))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    let report = clerk::audit::verify(&store).await?;
    anyhow::ensure!(report.is_ok(), "chain broken: {:?}", report.problems());
    println!("audit verify: ok, {} events", report.events);
    store.close().await;
    let (count, secs) = engine_loop(url, 2000).await?;
    println!(
        "engine: 2,000 `log` steps → {count} events in {:.2} s = {:.0} events/s, {:.1} µs/event \
         (before group commit: 10,004 events in 3.7 s, ~370 µs/event)",
        secs,
        count as f64 / secs,
        secs * 1e6 / count as f64
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let n = events();
        let dir = tempfile::tempdir()?;
        backend(
            "SQLite (file, WAL, synchronous=FULL)",
            &format!("sqlite://{}/bench.db", dir.path().display()),
            n,
        )
        .await?;
        let admin = std::env::var("CLERK_BENCH_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        if admin != "off" {
            let name = format!(
                "clerk_bench_{}",
                ulid::Ulid::new().to_string().to_lowercase()
            );
            let status = std::process::Command::new("psql")
                .arg(&admin)
                .args(["-qc", &format!("CREATE DATABASE {name}")])
                .status()?;
            anyhow::ensure!(status.success(), "cannot create database {name}");
            let url = match admin.rsplit_once('/') {
                Some((base, _)) => format!("{base}/{name}"),
                None => anyhow::bail!("CLERK_BENCH_PG must end in /DATABASE"),
            };
            let r = backend("PostgreSQL (127.0.0.1)", &url, n).await;
            let _ = std::process::Command::new("psql")
                .arg(&admin)
                .args([
                    "-qc",
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                ])
                .status();
            r?;
        }
        Ok(())
    })
}
