//! Benchmark `sheet-e2e`: `clerk run` of a playbook whose only step is
//! `sheet.read` of a 100,000-row × 10-column xlsx — the whole path a user
//! pays for (process start, store, audit, the read, keeping the run state) —
//! next to python-calamine and openpyxl (read-only) reading the same file
//! into Python lists.
//!
//! Each measurement is a fresh child process; its wall time is spawn to
//! exit, its peak RSS the high-water mark of its own memory (`VmHWM` of
//! /proc/PID/status, sampled every 2 ms until it exits; not `ru_maxrss` of
//! wait4, which Linux carries over from the spawning process's memory at
//! exec — this bench's own 130 MB — so every reader showed the same
//! figure). After each clerk run
//! the `runs` row of that run is measured in the SQLite file (bytes of
//! `vars`, and of the whole row). The peers run in their own venv
//! (`target/bench-venv`, created and filled with pip on first use); the
//! scripts are in benches/peers/. Runs are interleaved so that the load of a
//! shared machine hits every reader alike, and the load average is printed
//! beside the figures.
//!
//! Run: `cargo bench --bench sheet_e2e` (release). Options: `--rows N`
//! (default 100000), `--rounds N` (default 5), `--no-peers`, `--no-openpyxl`.
//! Targets (issue 13 §5): clerk ≤ 1.0× python-calamine wall, ≤ 250 MB peak
//! RSS, `runs` row < 64 KB.

#[path = "support/sheet_gen.rs"]
mod sheet_gen;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CLERK: &str = env!("CARGO_BIN_EXE_clerk");

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let rows = opt("--rows", 100_000);
    let rounds = opt("--rounds", 5).max(1);
    let peers = !args.iter().any(|a| a == "--no-peers");
    // openpyxl takes ~15 s a round on a quiet machine, minutes on a loaded one.
    let openpyxl = !args.iter().any(|a| a == "--no-openpyxl");

    let dir = tempfile::tempdir().expect("temp dir");
    let ws = dir.path();
    let file = ws.join("data.xlsx");
    let t = Instant::now();
    sheet_gen::generate(&file, rows);
    println!(
        "generated {rows} rows x 10 columns: {:.1} MB in {:.0} ms",
        std::fs::metadata(&file).map_or(0, |m| m.len()) as f64 / 1e6,
        t.elapsed().as_secs_f64() * 1e3
    );
    std::fs::write(
        ws.join("read.yaml"),
        "name: sheet-e2e\nsteps:\n  - sheet.read: data.xlsx\n    save_as: data\n",
    )
    .expect("playbook");

    let python = if peers { venv_python() } else { None };
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut readers: Vec<(&str, Vec<String>)> = vec![(
        "clerk run",
        vec![
            CLERK.into(),
            "--workspace".into(),
            ws.display().to_string(),
            "run".into(),
            "read.yaml".into(),
            "--json".into(),
        ],
    )];
    if let Some(py) = &python {
        for (name, script) in [
            ("python-calamine", "sheet_calamine.py"),
            ("openpyxl (read-only)", "sheet_openpyxl.py"),
        ]
        .into_iter()
        .take(if openpyxl { 2 } else { 1 })
        {
            readers.push((
                name,
                vec![
                    py.display().to_string(),
                    manifest
                        .join("benches/peers")
                        .join(script)
                        .display()
                        .to_string(),
                    file.display().to_string(),
                ],
            ));
        }
    }

    // A warm-up clerk run creates the store (migrations are not the read).
    let warm = measure(&readers[0].1, ws);
    assert!(warm.ok, "clerk run failed: {}", warm.out);

    let mut results: Vec<Vec<Sample>> = readers.iter().map(|_| Vec::new()).collect();
    let mut row_sizes = Vec::new();
    let mut loads = Vec::new();
    for round in 0..rounds {
        loads.push(loadavg());
        for (i, (name, cmd)) in readers.iter().enumerate() {
            let s = measure(cmd, ws);
            assert!(s.ok, "{name} failed: {}", s.out);
            if i == 0 {
                let id = serde_json::from_str::<serde_json::Value>(&s.out)
                    .ok()
                    .and_then(|v| v["id"].as_str().map(str::to_string))
                    .unwrap_or_default();
                row_sizes.push(run_row_size(ws, &id));
            }
            eprintln!(
                "round {}: {name:<22} {:>8.0} ms {:>7.1} MB",
                round + 1,
                s.wall.as_secs_f64() * 1e3,
                s.peak_kb as f64 / 1024.0
            );
            results[i].push(s);
        }
    }
    loads.push(loadavg());

    println!(
        "\n{:<22} {:>10} {:>10} {:>10} {:>13}  output",
        "reader", "median ms", "min ms", "max ms", "peak RSS MB"
    );
    let mut medians = Vec::new();
    for ((name, _), samples) in readers.iter().zip(&results) {
        let mut ms: Vec<f64> = samples.iter().map(|s| s.wall.as_secs_f64() * 1e3).collect();
        ms.sort_by(|a, b| a.total_cmp(b));
        let median = ms[ms.len() / 2];
        medians.push(median);
        let peak = samples.iter().map(|s| s.peak_kb).max().unwrap_or(0) as f64 / 1024.0;
        let output = samples
            .last()
            .map(|s| summary(name, &s.out))
            .unwrap_or_default();
        println!(
            "{name:<22} {median:>10.0} {:>10.0} {:>10.0} {peak:>13.1}  {output}",
            ms[0],
            ms[ms.len() - 1]
        );
    }
    let (vars, row) = row_sizes
        .iter()
        .fold((0, 0), |(a, b), (v, r)| (a.max(*v), b.max(*r)));
    println!("clerk `runs` row: vars {vars} bytes, whole row {row} bytes (target < 65536)");
    let clerk_peak = results[0].iter().map(|s| s.peak_kb).max().unwrap_or(0) as f64 / 1024.0;
    println!(
        "clerk peak RSS {clerk_peak:.1} MB (target <= 250 MB) {}",
        if clerk_peak <= 250.0 {
            "OK"
        } else {
            "OVER TARGET"
        }
    );
    if medians.len() > 1 {
        let ratio = medians[0] / medians[1];
        println!(
            "clerk / python-calamine wall: {ratio:.2}x (target <= 1.00x) {}",
            if ratio <= 1.0 { "OK" } else { "OVER TARGET" }
        );
    }
    if medians.len() > 2 {
        println!("clerk / openpyxl wall: {:.2}x", medians[0] / medians[2]);
    }
    println!(
        "load average (1 min) during the rounds: {}",
        loads
            .iter()
            .map(|l| format!("{l:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

struct Sample {
    wall: Duration,
    peak_kb: i64,
    ok: bool,
    out: String,
}

/// Runs one command as a child; its peak RSS is its own memory high-water
/// mark (`VmHWM`, KB), sampled while it runs.
fn measure(cmd: &[String], dir: &Path) -> Sample {
    let start = Instant::now();
    let child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    // Drain the pipes on threads so that a chatty child never blocks.
    let mut child = child;
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    // The high-water mark only grows, so the last sample before the exit
    // misses at most the growth of its last 2 ms.
    let hwm_t = std::thread::spawn(move || {
        let mut peak = 0i64;
        while let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let Some(kb) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            else {
                break; // a zombie has no memory left to show
            };
            peak = peak.max(kb);
            std::thread::sleep(Duration::from_millis(2));
        }
        peak
    });
    let mut status: libc::c_int = 0;
    // SAFETY: waits for our own child, whose pid we hold.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    let wall = start.elapsed();
    let out = out_t.join().unwrap_or_default();
    let err = err_t.join().unwrap_or_default();
    let ok = waited == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    Sample {
        wall,
        peak_kb: hwm_t.join().unwrap_or(0),
        ok,
        out: if ok { out } else { format!("{out}{err}") },
    }
}

/// Bytes of `vars` and of the whole `runs` row of run `id` (every column,
/// as sqlite3's JSON output spells the row: a slight over-count).
fn run_row_size(ws: &Path, id: &str) -> (usize, usize) {
    let db = ws.join(".clerk/clerk.db");
    let sql = |args: &[&str]| {
        Command::new("sqlite3")
            .args(args)
            .arg(&db)
            .arg(if args.is_empty() {
                format!("SELECT length(CAST(vars AS BLOB)) FROM runs WHERE id = '{id}'")
            } else {
                format!("SELECT * FROM runs WHERE id = '{id}'")
            })
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let vars = sql(&[]).parse().unwrap_or(0);
    let row = sql(&["-json"]).len();
    (vars, row)
}

fn summary(name: &str, out: &str) -> String {
    if name.starts_with("clerk") {
        let v: serde_json::Value = serde_json::from_str(out).unwrap_or_default();
        format!(
            "status={} vars.data={}",
            v["status"].as_str().unwrap_or("?"),
            v["vars"]["data"]
        )
    } else {
        out.trim().to_string()
    }
}

fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// The venv's python with python-calamine and openpyxl, made on first use.
fn venv_python() -> Option<PathBuf> {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-venv");
    let py = venv.join("bin/python");
    let has = |py: &Path| {
        Command::new(py)
            .args(["-c", "import python_calamine, openpyxl"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if py.exists() && has(&py) {
        return Some(py);
    }
    eprintln!("setting up {} (python-calamine, openpyxl)…", venv.display());
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success());
    let pip = made
        && Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "python-calamine", "openpyxl"])
            .status()
            .is_ok_and(|s| s.success());
    if pip && has(&py) {
        Some(py)
    } else {
        eprintln!("peers skipped: could not install python-calamine and openpyxl");
        None
    }
}
