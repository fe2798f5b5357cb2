//! The secret masker under `clerk serve`-like load: the engine in-process runs
//! N runs (default 5,000) one after another, each resolving 3 secrets whose
//! values differ from run to run (a fresh `secrets.yaml` per run), on one
//! SQLite store. Before the masker was per run, every run's values joined one
//! process-wide list, so memory and the cost of every masking call grew with
//! the number of runs.
//!
//! Reported every N/10 runs: resident memory (VmRSS), the mean wall time of a
//! run over the last window, and the time of one masking call on a 2 KB text
//! made (a) outside any run and (b) inside a run-like scope holding 3 secrets.
//! Flat columns from first to last row are the pass criterion.
//!
//! `cargo bench --bench masker`; CLERK_BENCH_RUNS sets N.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Instant;

const PLAYBOOK: &str = r#"name: masked
steps:
  - log: "signing in as {{ secrets.user }} with {{ secrets.password }}"
  - set: { token: "{{ secrets.api_key | upper }}" }
  - log: "token {{ token }} ready"
"#;

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Mean nanoseconds of one `redact` call on a 2 KB text.
fn time_redact(text: &str) -> f64 {
    let calls = 2_000;
    let start = Instant::now();
    let mut total = 0usize;
    for _ in 0..calls {
        total += clerk::secrets::redact(text).len();
    }
    std::hint::black_box(total);
    start.elapsed().as_nanos() as f64 / calls as f64
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("CLERK_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let ws = dir.path().to_path_buf();
    std::fs::create_dir_all(ws.join(".clerk"))?;
    let pb_path = ws.join("masked.yaml");
    std::fs::write(&pb_path, PLAYBOOK)?;
    let playbook = Arc::new(
        clerk::playbook::load_file(&pb_path, &clerk::actions::Registry)
            .map_err(|d| anyhow::anyhow!("{d}"))?,
    );
    let text: String =
        "An ordinary audit line with a case number 2026-000123 and a name. ".repeat(32);
    println!("masker: {n} runs, 3 secrets each (values differ per run)");
    println!(
        "{:>6}  {:>9}  {:>12}  {:>16}  {:>16}",
        "runs", "RSS (MB)", "ms per run", "redact outside", "redact in a run"
    );
    rt.block_on(async {
        let store = clerk::store::Store::open(&format!(
            "sqlite://{}",
            ws.join(".clerk/clerk.db").display()
        ))
        .await?;
        let recorder = clerk::audit::Recorder::new(store, Arc::new(clerk::secrets::redact));
        let config = Arc::new(clerk::config::Config::default());
        let step = (n / 10).max(1);
        let mut window = Instant::now();
        for i in 1..=n {
            let secrets_file = ws.join(".clerk/secrets.yaml");
            std::fs::write(
                &secrets_file,
                format!(
                    "user: robot-{i:06}\npassword: pw-{i:06}-Sup3r\napi_key: key-{i:06}-abcdef\n"
                ),
            )?;
            std::fs::set_permissions(&secrets_file, std::fs::Permissions::from_mode(0o600))?;
            let engine = clerk::engine::Engine {
                config: config.clone(),
                recorder: recorder.clone(),
                secrets: Arc::new(clerk::secrets::Secrets::load(&ws)?),
            };
            let outcome = engine
                .run_now(clerk::engine::RunRequest {
                    playbook: playbook.clone(),
                    inputs: Default::default(),
                    actor: "bench".into(),
                    bot: None,
                    workspace: ws.clone(),
                    cancel: tokio_util::sync::CancellationToken::new(),
                    max_runtime: None,
                    progress: false,
                })
                .await?;
            anyhow::ensure!(
                outcome.status.as_str() == "succeeded",
                "run {i} failed: {:?}",
                outcome.error
            );
            if i == 1 || i % step == 0 {
                let per_run = window.elapsed().as_secs_f64() * 1000.0
                    / if i == 1 { 1.0 } else { step as f64 };
                let outside = time_redact(&text);
                let masker = clerk::secrets::Masker::new();
                let inside = masker
                    .scope(async {
                        for s in [
                            format!("robot-{i:06}"),
                            format!("pw-{i:06}-Sup3r"),
                            format!("key-{i:06}-ABCDEF"),
                        ] {
                            clerk::secrets::register(&s);
                        }
                        time_redact(&text)
                    })
                    .await;
                println!(
                    "{i:>6}  {:>9.1}  {per_run:>12.2}  {:>13.0} ns  {:>13.0} ns",
                    rss_kb() as f64 / 1024.0,
                    outside,
                    inside
                );
                window = Instant::now();
            }
        }
        anyhow::Ok(())
    })?;
    Ok(())
}
