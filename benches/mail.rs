//! Mail throughput, end to end through the engine (argument rendering, address
//! and attachment checks, MIME assembly, the journal look-up and write, the
//! audit event) on an SQLite store:
//!
//! - file outbox: N mails, each with a 100 KB attachment, into `.clerk/outbox/`;
//! - SMTP: N mails to the aiosmtpd test server on loopback (skipped, with a
//!   note, when /usr/bin/python3 has no aiosmtpd).
//!
//! `cargo bench --bench mail`; CLERK_BENCH_MAILS sets N (default 200).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

const PLAYBOOK: &str = r#"name: bench
inputs:
  n: { type: number, default: 10 }
steps:
  - for_each: "{{ range(inputs.n) | list }}"
    as: i
    steps:
      - mail.send:
          to: "Team <team@city.example>, lead@city.example"
          subject: "Report {{ i }} — Brussel/Bruxelles"
          text: "Report number {{ i }} is attached."
          html: "<p>Report number <b>{{ i }}</b> is attached.</p>"
          attachments: [data/report.bin]
"#;

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("CLERK_BENCH_MAILS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    let dir = tempfile::tempdir()?;
    let per_mail = rt.block_on(run(dir.path(), n, ""))?;
    let files = std::fs::read_dir(dir.path().join(".clerk/outbox"))?.count();
    assert_eq!(files, n, "every mail is in the outbox");
    report("file outbox", n, per_mail);

    let python = std::env::var("CLERK_TEST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
    let has_aiosmtpd = Command::new(&python)
        .args(["-c", "import aiosmtpd"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !has_aiosmtpd {
        println!("smtp (loopback aiosmtpd): skipped, {python} has no aiosmtpd");
        return Ok(());
    }
    let spool = tempfile::tempdir()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py");
    let mut server = Command::new(&python)
        .arg(script)
        .arg("--dir")
        .arg(spool.path())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    if let Some(out) = server.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let port: u16 = line
        .strip_prefix("PORT ")
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("the SMTP server did not start: {line:?}"))?;
    let dir = tempfile::tempdir()?;
    let config = format!(
        "mail:\n  transport: smtp\n  smtp: {{ host: 127.0.0.1, port: {port}, timeout: 10s }}\n"
    );
    let result = rt.block_on(run(dir.path(), n, &config));
    let _ = server.kill();
    let _ = server.wait();
    let per_mail = result?;
    let received = std::fs::read_dir(spool.path())?
        .filter(|e| {
            e.as_ref()
                .map(|e| e.path().extension().is_some_and(|x| x == "eml"))
                .unwrap_or(false)
        })
        .count();
    assert_eq!(received, n, "every mail reached the server");
    report("smtp (loopback aiosmtpd)", n, per_mail);
    Ok(())
}

fn report(what: &str, n: usize, per_mail_ms: f64) {
    println!(
        "{what}: {n} mails with a 100 KB attachment, {per_mail_ms:.2} ms per mail, {:.0} mails/s",
        1000.0 / per_mail_ms
    );
}

/// Runs the bench playbook with `n` mails in a fresh workspace; ms per mail.
async fn run(ws: &Path, n: usize, clerk_yaml: &str) -> anyhow::Result<f64> {
    std::fs::create_dir_all(ws.join("data"))?;
    let blob: Vec<u8> = (0..100 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    std::fs::write(ws.join("data/report.bin"), blob)?;
    std::fs::write(ws.join("bench.yaml"), PLAYBOOK)?;
    std::fs::write(ws.join("clerk.yaml"), clerk_yaml)?;
    let config = clerk::config::Config::load(ws)?;
    let store =
        clerk::store::Store::open(&format!("sqlite://{}/.clerk/clerk.db", ws.display())).await?;
    let engine = clerk::engine::Engine {
        config: Arc::new(config),
        recorder: clerk::audit::Recorder::new(store.clone(), Arc::new(clerk::secrets::redact)),
        secrets: Arc::new(clerk::secrets::Secrets::load(ws)?),
    };
    let pb = clerk::playbook::load_file(&ws.join("bench.yaml"), &clerk::actions::Registry)
        .map_err(|d| anyhow::anyhow!("{d}"))?;
    let mut inputs = serde_json::Map::new();
    inputs.insert("n".into(), serde_json::json!(n));
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
    anyhow::ensure!(
        outcome.status == clerk::engine::RunStatus::Succeeded,
        "the bench run failed: {:?}",
        outcome.error
    );
    store.close().await;
    Ok(elapsed.as_secs_f64() * 1000.0 / n as f64)
}
