//! Scale benchmark for `clerk serve` (not a timed test): N bots (default
//! 10,000) with no-op playbooks, all firing every minute, for a few minutes
//! (default 3), against an SQLite store.
//!
//! Reports the peak RSS of the serve process (VmHWM), enqueue throughput
//! (rows per second of batch write), firing lateness — when each firing's run
//! was committed and claimable, relative to its scheduled time — and the
//! dispatch lateness (`started_at - scheduled_for`, which also measures how far
//! the worker pool is behind), and counts lost and doubled firings.
//!
//! Two shapes (`CLERK_BENCH_SPREAD`): `1` (default) spreads the bots over
//! the seconds of the minute (6-field cron `S * * * * *`, bot i at second
//! i mod 60) — a sustained 10,000 runs a minute, the throughput target;
//! `0` fires every bot on the same minute boundary — a burst of 10,000 at
//! once. Dispatch lateness p50/p99 and the peak RSS are printed next to
//! their targets, with the machine's load average (a shared machine).
//!
//! `cargo bench --bench scheduler_scale` (builds clerk in release first).
//! Knobs: CLERK_BENCH_BOTS, CLERK_BENCH_MINUTES, CLERK_BENCH_WORKERS (the
//! serve's `max_concurrent_runs`, default 32),
//! CLERK_BENCH_SPREAD, CLERK_BENCH_BIN (a clerk binary to measure instead
//! of this build's, e.g. the main branch's, for a side-by-side figure).

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// `/proc/loadavg`'s first three fields.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let n_bots = env_num("CLERK_BENCH_BOTS", 10_000);
    let minutes = env_num("CLERK_BENCH_MINUTES", 3);
    // `max_concurrent_runs` of the serve. A no-op run spends its time
    // waiting for the store's commits, so the slots, not the CPU, cap the
    // rate: 4 slots start ~120 runs/s here, 32 sustain the 167/s wanted.
    let workers = env_num("CLERK_BENCH_WORKERS", 32);
    let spread = env_num("CLERK_BENCH_SPREAD", 1) == 1;
    let load_before = loadavg();
    // CLERK_BENCH_BIN: another clerk binary (e.g. an older build, to compare).
    let clerk =
        std::env::var("CLERK_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_clerk").into());
    let clerk = clerk.as_str();
    let dir = tempfile::tempdir().expect("temp dir");
    // CLERK_BENCH_KEEP=1 keeps the workspace (store, serve.log) for a look.
    let keep = std::env::var_os("CLERK_BENCH_KEEP").is_some();
    let ws = dir.path().to_path_buf();
    let ws = ws.as_path();
    std::fs::create_dir_all(ws.join("bots")).expect("mkdir");
    std::fs::create_dir_all(ws.join("playbooks")).expect("mkdir");
    std::fs::write(
        ws.join("playbooks/noop.yaml"),
        "name: noop\nsteps:\n  - set: { done: true }\n",
    )
    .expect("write playbook");
    std::fs::write(
        ws.join("clerk.yaml"),
        format!("max_concurrent_runs: {workers}\n"),
    )
    .expect("write clerk.yaml");
    for i in 0..n_bots {
        let cron = if spread {
            format!("{} * * * * *", i % 60)
        } else {
            "* * * * *".to_string()
        };
        std::fs::write(
            ws.join(format!("bots/bot-{i:05}.yaml")),
            format!("name: bot-{i:05}\nplaybook: ../playbooks/noop.yaml\nschedule: [\"{cron}\"]\n"),
        )
        .expect("write bot");
    }
    eprintln!(
        "{n_bots} bots, {minutes} minute(s), {workers} workers, workspace {}",
        ws.display()
    );

    let log_path = ws.join("serve.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let started = Instant::now();
    let mut child = Command::new(clerk)
        .args(["--workspace"])
        .arg(ws)
        .args(["serve", "--grace", "5s"])
        .env_remove("CLERK_DATABASE_URL")
        .env("RUST_LOG", "clerk::scheduler::serve=debug,clerk=warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start clerk serve");
    let pid = child.id();
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    while !read_log().contains("clerk serve started") {
        if let Ok(Some(s)) = child.try_wait() {
            panic!("clerk serve exited ({s}):\n{}", read_log());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let startup = started.elapsed();
    let boot = Utc::now();
    // The measured minutes: the first boundary at least 5 s after start-up.
    let first = (boot + chrono::Duration::seconds(65))
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .expect("minute");
    // Spread: every second of the measured minutes; burst: their boundaries.
    let last = if spread {
        first + chrono::Duration::minutes(minutes as i64) - chrono::Duration::seconds(1)
    } else {
        first + chrono::Duration::minutes(minutes as i64 - 1)
    };
    let end = last + chrono::Duration::seconds(20);
    eprintln!(
        "serve up in {:.1}s; measuring firings {first} .. {last}",
        startup.as_secs_f64()
    );
    let mut peak_rss = 0;
    while Utc::now() < end {
        peak_rss = peak_rss.max(status_kb(pid, "VmHWM:"));
        std::thread::sleep(Duration::from_millis(500));
        eprint!(".");
        let _ = std::io::stderr().flush();
    }
    eprintln!();
    peak_rss = peak_rss.max(status_kb(pid, "VmHWM:"));
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let status = child.wait().expect("wait for clerk serve");

    // Batches: "<time> DEBUG enqueued firings runs=N events=E ms=M".
    let text = read_log();
    let mut batches: Vec<(DateTime<Utc>, usize, u64)> = Vec::new();
    for line in text.lines().filter(|l| l.contains("enqueued firings")) {
        let mut parts = line.split_whitespace();
        let Some(at) = parts.next().and_then(ts) else {
            continue;
        };
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .and_then(|v| v.parse::<u64>().ok())
        };
        if let (Some(runs), Some(ms)) = (field("runs="), field("ms=")) {
            batches.push((at, runs as usize, ms));
        }
    }
    batches.sort();

    let out = Command::new("sqlite3")
        .arg(ws.join(".clerk/clerk.db"))
        .arg(
            "SELECT bot, scheduled_for, queued_at, COALESCE(started_at, ''), status FROM runs \
             WHERE scheduled_for IS NOT NULL",
        )
        .output()
        .expect("sqlite3");
    let rows = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut per_slot: HashMap<(String, DateTime<Utc>), usize> = HashMap::new();
    let mut avail_late = Vec::new();
    let mut start_late = Vec::new();
    let mut first_start: BTreeMap<DateTime<Utc>, i64> = BTreeMap::new();
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for line in rows.lines() {
        let f: Vec<&str> = line.split('|').collect();
        if f.len() != 5 {
            continue;
        }
        let (Some(sched), Some(queued)) = (ts(f[1]), ts(f[2])) else {
            continue;
        };
        if sched < first || sched > last {
            continue;
        }
        *per_slot.entry((f[0].to_string(), sched)).or_default() += 1;
        *statuses.entry(f[4].to_string()).or_default() += 1;
        // Committed (claimable) when the batch holding it was written.
        let commit = batches
            .iter()
            .find(|(at, _, ms)| {
                *at - chrono::Duration::milliseconds(*ms as i64 + 5) <= queued && queued <= *at
            })
            .map(|(at, _, _)| *at)
            .unwrap_or(queued);
        avail_late.push((commit - sched).num_milliseconds().max(0));
        if let Some(s) = ts(f[3]) {
            let l = (s - sched).num_milliseconds();
            start_late.push(l);
            let e = first_start.entry(sched).or_insert(l);
            *e = (*e).min(l);
        }
    }
    avail_late.sort_unstable();
    start_late.sort_unstable();
    let expected = n_bots * minutes;
    let distinct = per_slot.len();
    let doubled: usize = per_slot.values().filter(|c| **c > 1).count();
    let big: Vec<&(DateTime<Utc>, usize, u64)> = batches
        .iter()
        .filter(|(_, n, _)| *n >= n_bots / 2)
        .collect();
    let rows_per_s: Vec<f64> = big
        .iter()
        .map(|(_, n, ms)| *n as f64 / ((*ms).max(1) as f64 / 1000.0))
        .collect();
    let leads: Vec<i64> = big
        .iter()
        .map(|(at, _, _)| {
            let boundary = (*at + chrono::Duration::seconds(30))
                .with_second(0)
                .and_then(|t| t.with_nanosecond(0))
                .unwrap_or(*at);
            (boundary - *at).num_milliseconds()
        })
        .collect();

    let load_after = loadavg();
    println!(
        "scheduler_scale: {n_bots} bots every minute ({}), {minutes} minute(s), {workers} workers, SQLite",
        if spread {
            "spread over the seconds of the minute"
        } else {
            "all on the minute boundary"
        }
    );
    println!(
        "  machine load average (1/5/15 min) before: {load_before}; after: {load_after}; {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "  clerk serve exit: {status}; start-up (load + validate bots): {:.1} s",
        startup.as_secs_f64()
    );
    println!(
        "  peak RSS (VmHWM): {:.1} MB (target < 150 MB)",
        peak_rss as f64 / 1024.0
    );
    println!(
        "  enqueue: {} batches of >= {} runs; {} rows/s (per batch); committed {} ms before the minute",
        big.len(),
        n_bots / 2,
        rows_per_s
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", "),
        leads
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  firing lateness (run committed and claimable - scheduled_for): p50 {} ms, p99 {} ms, max {} ms (target p99 < 250 ms)",
        percentile(&avail_late, 0.5),
        percentile(&avail_late, 0.99),
        avail_late.last().copied().unwrap_or(0)
    );
    println!(
        "  first run start per minute - scheduled_for: {}",
        first_start
            .values()
            .map(|v| format!("{v} ms"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  dispatch lateness (started_at - scheduled_for, {} of {} started): p50 {} ms, p99 {} ms, max {} ms (target p99 < 2000 ms)",
        start_late.len(),
        distinct,
        percentile(&start_late, 0.5),
        percentile(&start_late, 0.99),
        start_late.last().copied().unwrap_or(0)
    );
    let window_s = (last - first).num_seconds() as f64 + if spread { 1.0 } else { 60.0 };
    println!(
        "  runs started per minute over the measured window: {:.0} (target 10,000)",
        start_late.len() as f64 * 60.0 / window_s
    );
    println!("  run statuses at stop: {statuses:?}");
    println!(
        "  firings expected {expected}, found {distinct}: lost {}, doubled {doubled}",
        expected.saturating_sub(distinct)
    );
    if keep {
        println!("  workspace kept: {}", dir.keep().display());
    }
}
