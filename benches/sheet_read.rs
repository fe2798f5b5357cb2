//! Benchmark: `sheet.read` of a 100,000-row × 10-column xlsx against a bare
//! calamine loop over the same file — wall time and peak memory.
//!
//! The file is generated here (rust_xlsxwriter, fixed data: ints, floats,
//! strings, booleans, dates) into a temp folder. Each measurement runs in a
//! fresh child process (this binary re-invoked with `--child`), so that its
//! peak RSS (`VmHWM` in /proc/self/status) belongs to that read alone.
//!
//! Run: `cargo bench --bench sheet_read` (release). Options:
//! `--rows N` (default 100000), `--runs N` (default 5).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use calamine::{Data, Reader, Xlsx, open_workbook};
#[path = "support/sheet_gen.rs"]
mod sheet_gen;
use sheet_gen::generate;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let mode = args.get(i + 1).map(String::as_str).unwrap_or("");
        let file = PathBuf::from(args.get(i + 2).map(String::as_str).unwrap_or(""));
        child(mode, &file);
        return;
    }
    let opt = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let rows = opt("--rows", 100_000);
    let runs = opt("--runs", 5);
    let dir = tempfile::tempdir().expect("temp dir");
    // `--keep PATH`: generate into PATH (or reuse it) for profiling with `--child`.
    let file = args
        .iter()
        .position(|a| a == "--keep")
        .and_then(|i| args.get(i + 1))
        .map_or_else(|| dir.path().join("bench.xlsx"), PathBuf::from);
    let t = Instant::now();
    if !file.exists() {
        generate(&file, rows);
    }
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    println!(
        "generated {rows} rows x 10 columns: {:.1} MB in {:.0} ms",
        size as f64 / 1e6,
        t.elapsed().as_secs_f64() * 1e3
    );

    let exe = std::env::current_exe().expect("own path");
    let mut results: Vec<(&str, Vec<f64>, Vec<u64>, String)> = Vec::new();
    for mode in ["baseline", "calamine", "cells", "clerk"] {
        results.push((mode, Vec::new(), Vec::new(), String::new()));
    }
    let mut cpu: std::collections::HashMap<&str, Vec<f64>> = Default::default();
    // Interleave the modes so that machine noise hits them alike.
    for _ in 0..runs {
        for entry in results.iter_mut() {
            let out = Command::new(&exe)
                .args(["--child", entry.0])
                .arg(&file)
                .output()
                .expect("run child");
            let text = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                panic!(
                    "child {} failed: {}{}",
                    entry.0,
                    text,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let mut parts = text.split_whitespace();
            let ms: f64 = parts
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN);
            let hwm: u64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            let cpu_ms: f64 = parts
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN);
            cpu.entry(entry.0).or_default().push(cpu_ms);
            entry.1.push(ms);
            entry.2.push(hwm);
            entry.3 = parts.collect::<Vec<_>>().join(" ");
        }
    }
    println!(
        "{:<10} {:>12} {:>12} {:>14} {:>14}  check",
        "reader", "median ms", "min ms", "median CPU ms", "peak RSS MB"
    );
    let mut medians = std::collections::HashMap::new();
    for (mode, times, hwms, check) in &results {
        let mut t = times.clone();
        t.sort_by(|a, b| a.total_cmp(b));
        let median = t[t.len() / 2];
        medians.insert(*mode, median);
        let peak = hwms.iter().max().copied().unwrap_or(0) as f64 / 1024.0;
        let mut c = cpu[mode].clone();
        c.sort_by(|a, b| a.total_cmp(b));
        let cpu_median = c[c.len() / 2];
        println!(
            "{mode:<10} {median:>12.1} {:>12.1} {cpu_median:>14.0} {peak:>14.1}  {check}",
            t[0]
        );
    }
    let ratio = medians["clerk"] / medians["calamine"];
    println!(
        "clerk / calamine wall time: {ratio:.2}x (target <= 1.30x) {}",
        if ratio <= 1.3 { "OK" } else { "OVER TARGET" }
    );
}

/// One measured read; prints `elapsed_ms vmhwm_kb check...`.
/// The clock stops once the reader has the data in hand (after the bare
/// loop has visited every cell; when clerk's result is complete), before
/// either frees its data.
fn child(mode: &str, file: &Path) {
    let start = Instant::now();
    let mut elapsed = None;
    let check = match mode {
        "baseline" => "process only".to_string(),
        "calamine" => {
            // The loop a Rust program would write: range, then every cell.
            let mut wb: Xlsx<_> = open_workbook(file).expect("open");
            let range = wb.worksheet_range("Data").expect("sheet");
            let (mut cells, mut text) = (0u64, 0usize);
            for row in range.rows() {
                for c in row {
                    if !matches!(c, Data::Empty) {
                        cells += 1;
                    }
                    if let Data::String(s) = c {
                        text += s.len();
                    }
                }
            }
            elapsed = Some(start.elapsed());
            format!("cells={cells} text={text}")
        }
        "cells" => {
            // calamine's streaming cell reader alone (what clerk builds on).
            let mut wb: Xlsx<_> = open_workbook(file).expect("open");
            let mut reader = wb.worksheet_cells_reader("Data").expect("sheet");
            let mut cells = 0u64;
            while let Some(c) = reader.next_cell().expect("cell") {
                if !matches!(c.get_value(), calamine::DataRef::Empty) {
                    cells += 1;
                }
            }
            elapsed = Some(start.elapsed());
            format!("cells={cells}")
        }
        "clerk" => {
            let args: clerk::actions::sheet::ReadArgs =
                serde_json::from_value(serde_json::json!({ "path": file })).expect("args");
            let cancel = tokio_util::sync::CancellationToken::new();
            let (_, outcome) =
                clerk::actions::sheet::read_path(file, "bench.xlsx", &args, &cancel).expect("read");
            let (_, table) = outcome.expect("decode");
            elapsed = Some(start.elapsed());
            let cells: usize = (0..table.rows.len())
                .filter_map(|i| table.rows.row(i))
                .map(|r| r.iter().filter(|v| !v.is_none()).count())
                .sum();
            format!("rows={} cells={cells}", table.rows.len())
        }
        other => panic!("unknown mode {other}"),
    };
    let ms = elapsed.unwrap_or_else(|| start.elapsed()).as_secs_f64() * 1e3;
    println!("{ms:.1} {} {} {check}", vm_hwm_kb(), cpu_ms());
}

/// User + system CPU time of this process so far (utime + stime, clock ticks
/// of 10 ms): with the second thread clerk uses, CPU time and wall time differ.
fn cpu_ms() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            let f: Vec<&str> = after.split_whitespace().collect();
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) * 10.0)
        })
        .unwrap_or(f64::NAN)
}

fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
