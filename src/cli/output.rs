//! Printing: every line clerk prints goes through the redactor.
//!
//! A reader that goes away (`clerk runs show X | head`) is not an error: clerk
//! stops quietly with exit 0, like `git log | head`. (A pipe closing is the
//! reader's choice; the data clerk had already written is what it asked for.)

use std::io::Write;

/// Writes text to stdout; a closed pipe ends the process quietly (exit 0),
/// any other write error is reported once (exit 1).
pub fn write_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let r = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    match r {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            std::process::exit(1);
        }
    }
}

/// Prints a line to stdout with secrets masked.
pub fn out(text: &str) {
    write_stdout(&format!("{}\n", crate::secrets::redact(text)));
}

/// Prints an error and its causes as one readable paragraph on stderr.
pub fn print_error(e: &anyhow::Error) {
    let mut text = format!("error: {e}");
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(&format!(": {c}"));
        }
    }
    eprintln!("{}", crate::secrets::redact(&text));
}

/// Prints JSON data to stdout with secrets masked.
pub fn out_json(value: &serde_json::Value) {
    let mut v = value.clone();
    crate::secrets::redact_json(&mut v);
    match serde_json::to_string_pretty(&v) {
        Ok(s) => write_stdout(&format!("{s}\n")),
        Err(e) => eprintln!("error: cannot print JSON: {e}"),
    }
}

/// A plain text table with aligned columns.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let w = widths.get(i).copied().unwrap_or(0);
                format!("{c:<w$}")
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(headers.iter().map(|h| h.to_string()).collect())];
    for row in rows {
        out.push(line(row.clone()));
    }
    out.join("\n")
}

/// `1.2s`, `340ms`, `2m03s`.
pub fn duration_ms(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}
