//! What the end-to-end benchmarks share: the release `clerk` binary, the
//! portal binary beside it, a throw-away workspace, the audit events of a
//! run, medians and the machine's load.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `clerk` binary of this build (release under `cargo bench`).
pub fn clerk_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_clerk"))
}

/// The portal binary beside clerk's, built (same profile) when missing.
pub fn portal_bin() -> PathBuf {
    let bin = clerk_bin().with_file_name("legacy-portal");
    if !bin.exists() {
        let release = clerk_bin().parent().is_some_and(|d| d.ends_with("release"));
        let mut c = Command::new(env!("CARGO"));
        c.args(["build", "-p", "legacy-portal"]).current_dir(repo());
        if release {
            c.arg("--release");
        }
        let ok = c.status().map(|s| s.success()).unwrap_or(false);
        assert!(ok, "cargo build -p legacy-portal failed");
    }
    bin
}

/// `/proc/loadavg`'s three load averages, as `uptime` prints them.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Runs `clerk` in `dir` with `args` and extra environment; panics with its
/// output when it fails (a benchmark of a failing run measures nothing).
pub fn clerk(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut c = Command::new(clerk_bin());
    c.args(args).current_dir(dir);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run clerk");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "clerk {args:?} failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Every audit event of a run, in chain order.
pub fn events(dir: &Path, run_id: &str) -> Vec<Value> {
    clerk(
        dir,
        &["audit", "export", "--run", run_id, "--format", "jsonl"],
        &[],
    )
    .lines()
    .filter_map(|l| serde_json::from_str(l).ok())
    .collect()
}

/// An event's time in seconds since the epoch.
pub fn at(e: &Value) -> f64 {
    e["at"]
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.timestamp_micros() as f64 / 1e6)
        .unwrap_or(f64::NAN)
}
