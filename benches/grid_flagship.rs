//! The flagship job (`playbooks/parking-permits.yaml`: 40 requests, 36
//! entered, 4 rejected) through a real Selenium Grid 4 versus clerk's own
//! local chromedriver, interleaved so that both see the same machine load.
//!
//! Run with `cargo build --release -p legacy-portal && cargo bench --bench
//! grid_flagship` (after `scripts/test` or `npm ci --prefix tools/selenium`
//! for the server jar). Each measured run is
//! a fresh `clerk run` (release build) in a fresh workspace against a fresh
//! legacy portal, so both variants include starting their browser session.
//! One unmeasured warm-up run through the Grid comes first (its JVM is cold
//! after start; a real Grid runs for days). Pairs alternate their order
//! (local first, then Grid first). Prints every run with the 1-minute load
//! average before it, then medians and the Grid/local ratio (target ≤ 1.2).
//!
//! `CLERK_BENCH_PAIRS` (default 3) sets the number of measured pairs.

#[path = "../tests/support/grid.rs"]
mod grid;
#[path = "../tests/common/portal.rs"]
#[allow(dead_code)]
mod portal;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

const USER: &str = "permits-bot";
const PASSWORD: &str = "Pw-5d1c-Bench-Grid";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    Local,
    Grid,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

fn workspace(grid: Option<&str>) -> tempfile::TempDir {
    let ws = tempfile::tempdir().expect("temp dir");
    for rel in [
        "playbooks/parking-permits.yaml",
        "fixtures/sheets/permit-requests.xlsx",
    ] {
        let dest = ws.path().join(rel);
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::copy(repo().join(rel), &dest).expect("copy");
    }
    let mut yaml = String::from("mail:\n  transport: file\n  from: clerk@city.example\n");
    if let Some(url) = grid {
        yaml.push_str(&format!("browser:\n  webdriver_url: {url}\n"));
    }
    std::fs::write(ws.path().join("clerk.yaml"), yaml).expect("clerk.yaml");
    ws
}

/// One flagship run; its wall time.
fn run_once(variant: Variant, grid_url: &str) -> Duration {
    let portal = portal::Portal::start(&["--user", USER, "--password", PASSWORD]);
    let ws = workspace((variant == Variant::Grid).then_some(grid_url));
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_clerk"))
        .arg("--workspace")
        .arg(ws.path())
        .args(["run", "playbooks/parking-permits.yaml", "--json", "--input"])
        .arg(format!("portal_url={}", portal.url))
        .current_dir(ws.path())
        .env_remove("CLERK_DATABASE_URL")
        .env("CLERK_SECRET_PORTAL_USER", USER)
        .env("CLERK_SECRET_PORTAL_PASSWORD", PASSWORD)
        .env("RUST_LOG", "clerk=warn")
        // The Grid's node runs the full Chromium: so does the local side,
        // so the ratio is the Grid's cost, not two browsers.
        .env("CLERK_BROWSER_HEADLESS_SHELL", "false")
        .output()
        .expect("run clerk");
    let took = started.elapsed();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let summary = &v["vars"]["summary"];
    assert!(
        out.status.success() && summary["entered"] == 36 && summary["rejected"] == 4,
        "{variant:?} flagship run failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let pairs: usize = std::env::var("CLERK_BENCH_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let g = grid::Grid::start();
    let url = g.url.clone();
    println!(
        "grid_flagship: Selenium Grid {} standalone at {url}, {pairs} interleaved pairs, {} cores",
        grid::SELENIUM,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!("warm-up (not counted):");
    let l = load();
    let t = run_once(Variant::Grid, &url);
    println!("  Grid: {:.2} s (load {l:.2})", t.as_secs_f64());
    let mut local = Vec::new();
    let mut remote = Vec::new();
    let mut loads = Vec::new();
    for i in 0..pairs {
        let order = if i % 2 == 0 {
            [Variant::Local, Variant::Grid]
        } else {
            [Variant::Grid, Variant::Local]
        };
        for variant in order {
            let l = load();
            loads.push(l);
            let t = run_once(variant, &url).as_secs_f64();
            println!(
                "  pair {}: {variant:?} {t:.2} s (load before {l:.2}, after {:.2})",
                i + 1,
                load()
            );
            match variant {
                Variant::Local => local.push(t),
                Variant::Grid => remote.push(t),
            }
        }
    }
    let (ml, mg) = (median(&local), median(&remote));
    println!(
        "flagship local: median {ml:.2} s (min {:.2}, max {:.2})",
        local.iter().cloned().fold(f64::INFINITY, f64::min),
        local.iter().cloned().fold(0.0, f64::max)
    );
    println!(
        "flagship Grid:  median {mg:.2} s (min {:.2}, max {:.2})",
        remote.iter().cloned().fold(f64::INFINITY, f64::min),
        remote.iter().cloned().fold(0.0, f64::max)
    );
    println!(
        "Grid / local: {:.2}x (target <= 1.2); 1-min load average during the runs: median {:.2}, max {:.2}",
        mg / ml,
        median(&loads),
        loads.iter().cloned().fold(0.0, f64::max)
    );
}
