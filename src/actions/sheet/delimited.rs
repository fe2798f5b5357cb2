//! CSV and TSV: decoding legacy encodings, guessing the delimiter, reading
//! fields into the shared row builder, and writing records.

use anyhow::{Context, anyhow, bail};
use serde_json::Value;

use super::cells::{Cell, infer};
use super::rows::Builder;

/// The delimiter named in the arguments: one character, or `tab`.
pub fn parse_delimiter(text: &str) -> anyhow::Result<u8> {
    match text {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        s if s.len() == 1 && s.is_ascii() => Ok(s.as_bytes()[0]),
        s => bail!("`delimiter` must be one ASCII character or `tab`, not `{s}`"),
    }
}

/// Decodes the file's bytes. An undecodable byte is an error naming the line,
/// because a silently replaced character would end up in a portal or a report.
pub fn decode(bytes: &[u8], encoding: Option<&str>, shown: &str) -> anyhow::Result<String> {
    let label = encoding.unwrap_or("utf-8");
    // Common spellings the WHATWG label list lacks; WHATWG reads latin-1 as
    // windows-1252, which is also what legacy "latin-1" exports really are.
    let normalized = match label.trim().to_ascii_lowercase().replace('_', "-").as_str() {
        "latin-1" | "iso-8859-1" | "cp1252" | "windows1252" | "ansi" => "windows-1252".to_string(),
        other => other.to_string(),
    };
    let enc = encoding_rs::Encoding::for_label(normalized.as_bytes()).ok_or_else(|| {
        anyhow!(
            "unknown encoding `{label}` for {shown}; use e.g. `utf-8`, `windows-1252` or `latin-1`"
        )
    })?;
    if enc == encoding_rs::UTF_8 {
        let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        return match std::str::from_utf8(body) {
            Ok(s) => Ok(s.to_string()),
            Err(e) => {
                let line = line_of(body, e.valid_up_to());
                bail!(
                    "{shown} is not valid UTF-8 (line {line}, byte {}); if it is a legacy export, set `encoding: windows-1252`",
                    e.valid_up_to() + 1 + (bytes.len() - body.len())
                )
            }
        };
    }
    if let Some(text) = enc.decode_without_bom_handling_and_without_replacement(bytes) {
        return Ok(text.into_owned());
    }
    // Find the first line that does not decode, to name it.
    for (n, chunk) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
        if enc
            .decode_without_bom_handling_and_without_replacement(chunk)
            .is_none()
        {
            bail!(
                "{shown} is not valid {} (line {}); check `encoding:`",
                enc.name(),
                n + 1
            );
        }
    }
    bail!("{shown} is not valid {}; check `encoding:`", enc.name())
}

fn line_of(bytes: &[u8], offset: usize) -> usize {
    bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Guesses the delimiter from the first line: the most frequent of `,` `;`
/// tab outside quotes (`,` when none appears).
pub fn detect_delimiter(text: &str) -> u8 {
    let mut counts = [(b',', 0usize), (b';', 0), (b'\t', 0)];
    let mut quoted = false;
    for b in text.bytes() {
        match b {
            b'"' => quoted = !quoted,
            b'\n' if !quoted => break,
            _ if !quoted => {
                for c in counts.iter_mut() {
                    if c.0 == b {
                        c.1 += 1;
                    }
                }
            }
            _ => {}
        }
    }
    counts
        .iter()
        .max_by_key(|c| c.1)
        .filter(|c| c.1 > 0)
        .map_or(b',', |c| c.0)
}

/// Feeds every field to the builder (row = record number, 0-based).
pub fn read_into(
    text: &str,
    delimiter: u8,
    infer_types: bool,
    builder: &mut Builder,
    shown: &str,
    cancel: &tokio_util::sync::CancellationToken,
    max_cell_bytes: usize,
) -> anyhow::Result<()> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    let mut record = csv::StringRecord::new();
    let mut row: u32 = 0;
    loop {
        let more = reader.read_record(&mut record).map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            anyhow!("{shown}: cannot parse CSV at line {line}: {e}")
        })?;
        if !more {
            return Ok(());
        }
        if row.is_multiple_of(4096) && cancel.is_cancelled() {
            bail!("cancelled");
        }
        for (col, field) in record.iter().enumerate() {
            if field.len() > max_cell_bytes {
                bail!(
                    "{shown}: the field in column {} of line {} holds {} bytes, over the limit of {max_cell_bytes} (`max_cell_bytes`); refusing to read it",
                    col + 1,
                    record.position().map_or(0, |p| p.line()),
                    field.len()
                );
            }
            let value = if infer_types {
                infer(field)
            } else if field.is_empty() {
                minijinja::value::Value::from(())
            } else {
                minijinja::value::Value::from(field)
            };
            let cell = if value.is_none() {
                Cell::Empty
            } else {
                Cell::Value(value)
            };
            if builder.push(row, col as u32, cell).is_break() {
                return Ok(());
            }
        }
        row = row
            .checked_add(1)
            .with_context(|| format!("{shown} has more than 4294967295 rows"))?;
    }
}

/// A value as a CSV field: text as is, numbers and booleans spelled as JSON
/// does (`40.0` stays `40.0`), null empty, lists and maps as JSON.
pub fn field(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
