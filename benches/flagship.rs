//! flagship: `clerk run playbooks/parking-permits.yaml` — the 40-request
//! export entered into the real legacy portal (its 2004 style, or
//! `CLERK_BENCH_STYLE=2003`) through one headless Chromium, results and
//! exceptions workbooks, the run report, the mail to the file outbox.
//!
//! Prints per round: the run's wall time (process start to exit), the
//! request loop's time and per request, and a breakdown by action kind from
//! the audit trail (time inside each action, as each action measured it).
//! "clerk's own share" is what is left of the run's recorded span (run
//! started → run finished) outside every action: engine, templates and the
//! audit writes between steps. The first browser action's time includes the
//! browser start; closing the browser at the end (`close_ms` in
//! `run.finished`) is counted as the browser's, not clerk's.
//!
//! `cargo bench --bench flagship` (or `scripts/bench`); `CLERK_BENCH_ROUNDS`
//! (default 3) rounds, a fresh portal and workspace each.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::Value;
use support::{at, clerk_bin, events, load, median, portal_bin, repo};

const USER: &str = "permits-bot";
const PASSWORD: &str = "Pw-bench-flagship";

struct Portal(std::process::Child, String);

impl Portal {
    fn start(style: &str) -> Portal {
        let mut child = Command::new(portal_bin())
            .args(["--port", "0", "--user", USER, "--password", PASSWORD])
            .args(["--style", style])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start legacy-portal");
        let stdout = child.stdout.take().expect("portal stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("portal startup line");
        let url = line
            .trim()
            .strip_prefix("legacy-portal listening on ")
            .expect("portal URL")
            .to_string();
        Portal(child, url)
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Time inside an action as it measured itself (browser actions record
/// `detail.duration_ms`), else the engine's measure of the step.
fn inside_ms(e: &Value) -> f64 {
    e["detail"]["duration_ms"]
        .as_f64()
        .or_else(|| e["duration_ms"].as_f64())
        .unwrap_or(0.0)
}

struct Round {
    wall: f64,
    span: f64,
    loop_s: f64,
    by_action: BTreeMap<String, (usize, f64)>,
    events: usize,
}

fn round(style: &str) -> Round {
    // Dirty pages left by a build just before make every fsync of the run
    // wait behind their writeback: write them out first.
    let _ = Command::new("sync").status();
    let portal = Portal::start(style);
    let dir = tempfile::tempdir().expect("temp dir");
    let ws = dir.path();
    std::fs::create_dir_all(ws.join("playbooks")).expect("mkdir");
    std::fs::create_dir_all(ws.join("fixtures/sheets")).expect("mkdir");
    std::fs::copy(
        repo().join("playbooks/parking-permits.yaml"),
        ws.join("playbooks/parking-permits.yaml"),
    )
    .expect("copy playbook");
    std::fs::copy(
        repo().join("fixtures/sheets/permit-requests.xlsx"),
        ws.join("fixtures/sheets/permit-requests.xlsx"),
    )
    .expect("copy export");
    let started = Instant::now();
    let out = Command::new(clerk_bin())
        .current_dir(ws)
        .args(["run", "playbooks/parking-permits.yaml", "--json"])
        .arg("--input")
        .arg(format!("portal_url={}", portal.1))
        .env("CLERK_SECRET_PORTAL_USER", USER)
        .env("CLERK_SECRET_PORTAL_PASSWORD", PASSWORD)
        .output()
        .expect("run clerk");
    let wall = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the flagship failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run: Value = serde_json::from_str(&stdout).expect("clerk run --json");
    let summary = &run["vars"]["summary"];
    assert_eq!(summary["entered"], 36, "{summary}");
    assert_eq!(summary["rejected"], 4, "{summary}");
    let ev = events(ws, run["id"].as_str().expect("run id"));
    let first = ev.first().map(at).unwrap_or(f64::NAN);
    let last = ev.last().map(at).unwrap_or(f64::NAN);
    let items: Vec<f64> = ev
        .iter()
        .filter(|e| e["step"].as_str().is_some_and(|s| s.contains("/item[")))
        .map(at)
        .collect();
    // The loop: from the end of the step before it to its last event.
    let loop_end = items.iter().cloned().fold(f64::NAN, f64::max);
    let loop_start = ev
        .iter()
        .take_while(|e| !e["step"].as_str().is_some_and(|s| s.contains("/item[")))
        .filter(|e| e["kind"] == "action")
        .map(at)
        .fold(f64::NAN, f64::max);
    let mut by_action: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    for e in ev.iter().filter(|e| e["kind"] == "action") {
        let name = e["action"].as_str().unwrap_or("?").to_string();
        let slot = by_action.entry(name).or_default();
        slot.0 += 1;
        slot.1 += inside_ms(e);
    }
    // Closing the browser when the run ends (chromedriver's goodbye,
    // Chromium's exit) is the browser's time, not clerk's: `run.finished`
    // says how long it took (`close_ms`).
    if let Some(ms) = ev
        .iter()
        .rev()
        .find(|e| e["kind"] == "run.finished")
        .and_then(|e| e["detail"]["close_ms"].as_f64())
    {
        by_action.insert("(browser close at end)".into(), (1, ms));
    }
    Round {
        wall,
        span: last - first,
        loop_s: loop_end - loop_start,
        by_action,
        events: ev.len(),
    }
}

fn main() {
    let rounds = std::env::var("CLERK_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3usize)
        .max(1);
    let style = std::env::var("CLERK_BENCH_STYLE").unwrap_or_else(|_| "2004".into());
    println!(
        "flagship: playbooks/parking-permits.yaml, 40 requests, portal style {style}, {rounds} rounds; load before: {}",
        load()
    );
    let mut results = Vec::new();
    for r in 1..=rounds {
        let x = round(&style);
        let inside: f64 = x.by_action.values().map(|(_, ms)| ms).sum::<f64>() / 1e3;
        let own = (x.span - inside).max(0.0);
        println!(
            "round {r}: wall {:.2} s, recorded span {:.2} s, request loop {:.2} s = {:.0} ms/request, \
             {} audit events, clerk's own share {:.2} s = {:.1} %  (load {})",
            x.wall,
            x.span,
            x.loop_s,
            x.loop_s * 1e3 / 40.0,
            x.events,
            own,
            own / x.span * 100.0,
            load()
        );
        results.push((x, own));
    }
    let walls: Vec<f64> = results.iter().map(|(x, _)| x.wall).collect();
    let loops: Vec<f64> = results.iter().map(|(x, _)| x.loop_s).collect();
    let shares: Vec<f64> = results.iter().map(|(x, o)| o / x.span * 100.0).collect();
    println!();
    println!(
        "median: wall {:.2} s (target <= 6 s), request loop {:.2} s = {:.0} ms/request, clerk's own share {:.1} % (target <= 5 %)",
        median(&walls),
        median(&loops),
        median(&loops) * 1e3 / 40.0,
        median(&shares)
    );
    // The breakdown of the median round.
    let mut order: Vec<usize> = (0..results.len()).collect();
    order.sort_by(|a, b| results[*a].0.wall.total_cmp(&results[*b].0.wall));
    let (mid, own) = &results[order[order.len() / 2]];
    println!("by action kind (round with the median wall time):");
    let mut rows: Vec<(&String, &(usize, f64))> = mid.by_action.iter().collect();
    rows.sort_by(|a, b| b.1.1.total_cmp(&a.1.1));
    for (name, (n, ms)) in rows {
        println!(
            "  {name:<22} {n:>5} steps  {:>8.0} ms  {:>6.1} ms/step  {:>5.1} %",
            ms,
            ms / *n as f64,
            ms / 1e3 / mid.span * 100.0
        );
    }
    println!(
        "  {:<22} {:>5}        {:>8.0} ms  {:>14} {:>5.1} %",
        "(clerk: engine+audit)",
        "",
        own * 1e3,
        "",
        own / mid.span * 100.0
    );
    println!("load after: {}", load());
}
