//! form-entry: a local 3-field form (`benches/peers/form.html`: Name, City,
//! Email, Save; the page then shows `saved <name>`), N records (default 100),
//! each confirmation read back and checked — clerk (`clerk run` of
//! `benches/peers/form-entry.yaml`: one `fill_form` and one click that reads
//! the answer per record, the audit trail written as always) against Python
//! Selenium (`benches/peers/sel.py`) and Robot Framework + SeleniumLibrary
//! (`benches/peers/rf.robot`), run interleaved, ≥ 3 rounds, medians.
//!
//! Each side's figure is its loop time (the browser start is outside it):
//! the peers print theirs; clerk's is read from its audit trail (from the
//! end of the `browser.open` step to the last event of the last record).
//!
//! Run with `scripts/bench` (creates the peers' venv under
//! `target/bench-venv`), or `cargo bench --bench form_entry` with the venv
//! already there. `CLERK_BENCH_RECORDS`, `CLERK_BENCH_ROUNDS`,
//! `CLERK_BENCH_VENV` override the defaults; without the venv only clerk runs.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{at, clerk, events, load, median, repo};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The seconds a peer printed for its loop (`... N records in 12.3s ...`).
fn peer_seconds(out: &str) -> Option<f64> {
    let after = out.split(" records in ").nth(1)?;
    let num: String = after
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    num.parse().ok()
}

fn run_peer(name: &str, mut c: Command) -> Option<f64> {
    let out = match c.output() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{name}: cannot start: {e}");
            return None;
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        eprintln!("{name} failed:\n{text}");
        return None;
    }
    let s = peer_seconds(&text);
    if s.is_none() {
        eprintln!("{name}: no loop time in its output:\n{text}");
    }
    s
}

/// One clerk run of N records; returns the loop's seconds.
fn run_clerk(ws: &Path, page: &Path, records: usize) -> f64 {
    let out = clerk(
        ws,
        &[
            "run",
            "form-entry.yaml",
            "--input",
            &format!("page=file://{}", page.display()),
            "--input",
            &format!("n={records}"),
            "--json",
        ],
        // The same browser as the peers (/usr/bin/chromium, headless), not
        // the headless shell clerk would pick: the ratio compares the
        // runtimes, not two browsers.
        &[("CLERK_BROWSER_HEADLESS_SHELL", "false")],
    );
    let run: serde_json::Value = serde_json::from_str(&out).expect("clerk run --json");
    assert_eq!(run["status"], "succeeded", "{run}");
    let id = run["id"].as_str().expect("run id");
    let ev = events(ws, id);
    let opened = ev
        .iter()
        .find(|e| e["action"] == "browser.open")
        .map(at)
        .expect("the browser.open event");
    let last = format!("/item[{records}]/");
    let end = ev
        .iter()
        .filter(|e| e["step"].as_str().is_some_and(|s| s.contains(&last)))
        .map(at)
        .fold(f64::NAN, f64::max);
    // Every record was checked by the playbook's assert; count them too.
    let saved = ev
        .iter()
        .filter(|e| e["action"] == "browser.click" && e["outcome"] == "ok")
        .count();
    assert_eq!(saved, records, "every record saved and read back");
    end - opened
}

fn main() {
    let records = env_num("CLERK_BENCH_RECORDS", 100);
    let rounds = env_num("CLERK_BENCH_ROUNDS", 3).max(1);
    let peers = repo().join("benches/peers");
    let page = peers.join("form.html");
    let venv = std::env::var("CLERK_BENCH_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("target/bench-venv"));
    let python = venv.join("bin/python3");
    let have_peers = python.exists();
    if !have_peers {
        eprintln!(
            "no peers' venv at {} (scripts/bench creates it): clerk only",
            venv.display()
        );
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let ws = dir.path();
    std::fs::copy(peers.join("form-entry.yaml"), ws.join("form-entry.yaml"))
        .expect("copy the playbook");
    println!(
        "form-entry: {records} records, {rounds} rounds interleaved (clerk, Selenium, Robot Framework); load before: {}",
        load()
    );

    let mut clerk_ms = Vec::new();
    let mut sel_ms = Vec::new();
    let mut rf_ms = Vec::new();
    for round in 1..=rounds {
        let c = run_clerk(ws, &page, records) * 1e3 / records as f64;
        clerk_ms.push(c);
        let mut line = format!("round {round}: clerk {c:.1} ms/record");
        if have_peers {
            let mut sel = Command::new(&python);
            sel.arg(peers.join("sel.py"))
                .arg(records.to_string())
                .arg(&page);
            if let Some(s) = run_peer("selenium", sel) {
                let v = s * 1e3 / records as f64;
                sel_ms.push(v);
                line.push_str(&format!(", selenium {v:.1}"));
            }
            let mut rf = Command::new(&python);
            rf.args(["-m", "robot", "--output", "NONE", "--report", "NONE"])
                .args(["--log", "NONE", "--console", "quiet"])
                .arg("--variable")
                .arg(format!("N:{records}"))
                .arg(peers.join("rf.robot"));
            if let Some(s) = run_peer("robotframework", rf) {
                let v = s * 1e3 / records as f64;
                rf_ms.push(v);
                line.push_str(&format!(", robotframework {v:.1}"));
            }
        }
        println!("{line}  (load {})", load());
    }

    let c = median(&clerk_ms);
    println!();
    println!("median ms/record over {rounds} rounds:");
    println!("  clerk           {c:8.1}");
    if !sel_ms.is_empty() {
        let s = median(&sel_ms);
        println!(
            "  python selenium {s:8.1}   clerk/selenium = {:.3} (target <= 0.25)",
            c / s
        );
    }
    if !rf_ms.is_empty() {
        let r = median(&rf_ms);
        println!(
            "  robot framework {r:8.1}   clerk/robot    = {:.3} (target <= 0.15)",
            c / r
        );
    }
    println!("load after: {}", load());
}
