//! `sheet.write` (xlsx through rust_xlsxwriter, CSV/TSV) and `sheet.append`
//! (CSV/TSV). Both build the whole file in memory and replace the target
//! atomically (temp file in the same folder + rename): a failed write never
//! leaves a half-written file, and the old file stays until the new one is complete.

use std::path::Path;

use anyhow::{Context, anyhow, bail};
use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::cells::address;
use super::delimited;
use super::rows::Warnings;
use crate::actions::{Action, ActionContext, ActionError, ActionResult};
use crate::fsutil::{sha256_hex, write_atomic, write_atomic_with};

/// An output column: a key of the row maps, optionally with its header label.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ColumnSpec {
    /// The key, also used as the header label.
    Key(String),
    /// A key and the header label to show for it.
    Labeled { key: String, label: String },
}

impl ColumnSpec {
    fn key(&self) -> &str {
        match self {
            ColumnSpec::Key(k) | ColumnSpec::Labeled { key: k, .. } => k,
        }
    }

    fn label(&self) -> &str {
        match self {
            ColumnSpec::Key(k) | ColumnSpec::Labeled { label: k, .. } => k,
        }
    }
}

/// Arguments of `sheet.write`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteArgs {
    /// The file to write: `.xlsx`, `.csv` or `.tsv` (the extension picks the
    /// format). Folders are created; an existing file is replaced atomically.
    pub path: String,
    /// The rows: a list of maps (keys become columns) or a list of lists.
    /// The result of `sheet.read` is accepted as is.
    pub rows: Value,
    /// Which keys to write, in order, with optional header labels:
    /// `[id, name]` or `[{ key: id, label: "Request" }]`. Default: every key,
    /// in the order first seen. With list rows these are the header labels.
    #[serde(default)]
    pub columns: Option<Vec<ColumnSpec>>,
    /// xlsx only: the sheet name (default `Sheet1`).
    #[serde(default)]
    pub sheet: Option<String>,
    /// CSV only: the delimiter, one character or `tab` (default `,`; tab for `.tsv`).
    #[serde(default)]
    pub delimiter: Option<String>,
}

/// Writes rows to an xlsx or CSV file.
pub struct Write;

impl Action for Write {
    type Args = WriteArgs;
    const NAME: &'static str = "sheet.write";
    const SUMMARY: &'static str =
        "Write rows to an xlsx (bold frozen header, real dates) or CSV file, atomically.";
    const EXAMPLE: &'static str = "- sheet.write:\n    path: out/report.xlsx\n    rows: [{ id: 1, name: Ana, start: \"2026-03-01\" }]\n    columns: [id, { key: name, label: Name }, start]\n    sheet: Report\n";
    const RESULT: &'static str = "{ path, sha256, rows, sheet }";

    async fn run(ctx: &mut ActionContext<'_>, args: Self::Args) -> ActionResult {
        let path = ctx.resolve(&args.path)?;
        let shown = ctx.display_path(&path);
        ctx.target(shown.clone());
        ctx.detail("path", shown.clone());
        let kind =
            OutKind::of(&path, &shown, "sheet.write", true).map_err(ActionError::permanent)?;
        let sheet = args.sheet.clone().unwrap_or_else(|| "Sheet1".to_string());
        let delimiter =
            delimiter_for(&path, args.delimiter.as_deref()).map_err(ActionError::permanent)?;
        let shown2 = shown.clone();
        let sheet2 = sheet.clone();
        let (sha, n, warnings) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let grid = Grid::new(args.rows, args.columns.as_deref(), None, &shown2)?;
            let mut warnings = Warnings::default();
            let bytes = match kind {
                OutKind::Xlsx => xlsx_bytes(&grid, &sheet2, &shown2, &mut warnings)?,
                OutKind::Csv => csv_bytes(&grid, delimiter, true, csv::Terminator::Any(b'\n'))?,
            };
            write_atomic(&path, &bytes)?;
            Ok((sha256_hex(&bytes), grid.rows.len(), warnings))
        })
        .await
        .context("the sheet writer task failed")?
        .map_err(ActionError::permanent)?;
        ctx.detail("sha256", sha.clone());
        ctx.detail(
            "sheet",
            if kind == OutKind::Xlsx {
                Value::from(sheet.clone())
            } else {
                Value::Null
            },
        );
        ctx.detail("rows", n as u64);
        ctx.detail("warnings", warnings.listed.clone());
        if warnings.total > warnings.listed.len() {
            ctx.detail("warning_count", warnings.total as u64);
        }
        Ok(
            json!({ "path": shown, "sha256": sha, "rows": n, "sheet": if kind == OutKind::Xlsx { Value::from(sheet) } else { Value::Null } }),
        )
    }
}

/// Arguments of `sheet.append`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendArgs {
    /// The CSV or TSV file to add rows to; created (with a header row) when missing.
    pub path: String,
    /// The rows: a list of maps or a list of lists.
    pub rows: Value,
    /// Keys and header labels, as for `sheet.write`. When the file exists its
    /// header decides the column order; map keys are matched to it.
    #[serde(default)]
    pub columns: Option<Vec<ColumnSpec>>,
    /// The delimiter (default: the existing file's, else `,`; tab for `.tsv`).
    #[serde(default)]
    pub delimiter: Option<String>,
}

/// Appends rows to a CSV file.
pub struct Append;

impl Action for Append {
    type Args = AppendArgs;
    const NAME: &'static str = "sheet.append";
    const SUMMARY: &'static str =
        "Append rows to a CSV file (the header is written only when the file is new).";
    const EXAMPLE: &'static str =
        "- sheet.append:\n    path: out/log.csv\n    rows: [{ id: 1, status: done }]\n";
    const RESULT: &'static str = "{ path, sha256, rows }";

    async fn run(ctx: &mut ActionContext<'_>, args: Self::Args) -> ActionResult {
        let path = ctx.resolve(&args.path)?;
        let shown = ctx.display_path(&path);
        ctx.target(shown.clone());
        ctx.detail("path", shown.clone());
        OutKind::of(&path, &shown, "sheet.append", false).map_err(ActionError::permanent)?;
        let shown2 = shown.clone();
        let (sha, n, created) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let existing = match std::fs::read(&path) {
                Ok(b) if !b.is_empty() => Some(b),
                Ok(_) => None,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => bail!("cannot read {shown2}: {e}"),
            };
            let Some(old) = existing else {
                let delimiter = delimiter_for(&path, args.delimiter.as_deref())?;
                let grid = Grid::new(args.rows, args.columns.as_deref(), None, &shown2)?;
                let bytes = csv_bytes(&grid, delimiter, true, csv::Terminator::Any(b'\n'))?;
                write_atomic(&path, &bytes)?;
                return Ok((sha256_hex(&bytes), grid.rows.len(), true));
            };
            let text = std::str::from_utf8(&old).map_err(|e| {
                anyhow!("cannot append to {shown2}: it is not UTF-8 (byte {}); clerk appends to UTF-8 files only", e.valid_up_to() + 1)
            })?;
            let text = text.strip_prefix('\u{feff}').unwrap_or(text);
            let delimiter = match args.delimiter.as_deref() {
                Some(d) => delimited::parse_delimiter(d)?,
                None if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("tsv")) => b'\t',
                None => delimited::detect_delimiter(text),
            };
            let header: Vec<String> = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .delimiter(delimiter)
                .from_reader(text.as_bytes())
                .records()
                .next()
                .transpose()
                .map_err(|e| anyhow!("cannot append to {shown2}: its header line is not valid CSV: {e}"))?
                .map(|r| r.iter().map(str::to_string).collect())
                .unwrap_or_default();
            let grid = Grid::new(args.rows, args.columns.as_deref(), Some(header), &shown2)?;
            let crlf = text.contains("\r\n");
            let terminator = if crlf { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') };
            let new_rows = csv_bytes(&grid, delimiter, false, terminator)?;
            let mut all = old.clone();
            if !all.ends_with(b"\n") {
                all.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            }
            all.extend_from_slice(&new_rows);
            write_atomic_with(&path, |f| {
                use std::io::Write as _;
                f.write_all(&all).map_err(Into::into)
            })?;
            Ok((sha256_hex(&all), grid.rows.len(), false))
        })
        .await
        .context("the sheet writer task failed")?
        .map_err(ActionError::permanent)?;
        ctx.detail("sha256", sha.clone());
        ctx.detail("rows", n as u64);
        ctx.detail("created", created);
        ctx.detail("warnings", Vec::<String>::new());
        Ok(json!({ "path": shown, "sha256": sha, "rows": n }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum OutKind {
    Xlsx,
    Csv,
}

impl OutKind {
    fn of(path: &Path, shown: &str, action: &str, xlsx_ok: bool) -> anyhow::Result<OutKind> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "csv" | "tsv" | "txt" => Ok(OutKind::Csv),
            "xlsx" if xlsx_ok => Ok(OutKind::Xlsx),
            "xlsx" => bail!(
                "`{action}` adds rows to CSV files only, not {shown}; to extend an xlsx, read it with `sheet.read` and write all rows with `sheet.write`"
            ),
            _ if xlsx_ok => {
                bail!("`{action}` cannot write {shown}: the extension must be .xlsx, .csv or .tsv")
            }
            _ => bail!("`{action}` cannot write {shown}: the extension must be .csv or .tsv"),
        }
    }
}

/// The delimiter asked for, else tab for `.tsv` and `,` for the rest.
fn delimiter_for(path: &Path, given: Option<&str>) -> anyhow::Result<u8> {
    match given {
        Some(d) => delimited::parse_delimiter(d),
        None if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("tsv")) =>
        {
            Ok(b'\t')
        }
        None => Ok(b','),
    }
}

/// Rows as a grid of values under header labels (empty labels: no header row).
struct Grid {
    labels: Vec<String>,
    rows: Vec<Vec<Value>>,
}

impl Grid {
    fn new(
        rows: Value,
        columns: Option<&[ColumnSpec]>,
        existing_header: Option<Vec<String>>,
        shown: &str,
    ) -> anyhow::Result<Grid> {
        let items = match rows {
            Value::Array(a) => a,
            Value::Null => Vec::new(),
            Value::Object(mut m) if m.get("rows").is_some_and(Value::is_array) => {
                match m.remove("rows") {
                    Some(Value::Array(a)) => a,
                    _ => Vec::new(),
                }
            }
            other => bail!(
                "`rows` must be a list of maps or a list of lists (writing {shown}), got {}",
                kind_of(&other)
            ),
        };
        let maps = items.iter().filter(|v| v.is_object()).count();
        let lists = items.iter().filter(|v| v.is_array()).count();
        if let Some((i, bad)) = items
            .iter()
            .enumerate()
            .find(|(_, v)| !v.is_object() && !v.is_array())
        {
            bail!(
                "`rows` item {} is {}, not a map or a list (writing {shown})",
                i + 1,
                kind_of(bad)
            );
        }
        if maps > 0 && lists > 0 {
            bail!("`rows` mixes maps and lists (writing {shown}); use one kind");
        }
        // (key, label) pairs.
        let mut cols: Vec<(String, String)> = match (&existing_header, columns) {
            (Some(header), cols) => header
                .iter()
                .map(|label| {
                    let key = cols
                        .and_then(|cs| cs.iter().find(|c| c.label() == label))
                        .map_or(label.as_str(), |c| c.key());
                    (key.to_string(), label.clone())
                })
                .collect(),
            (None, Some(cs)) => cs
                .iter()
                .map(|c| (c.key().to_string(), c.label().to_string()))
                .collect(),
            (None, None) => Vec::new(),
        };
        if maps > 0 && existing_header.is_none() && columns.is_none() {
            let mut seen = std::collections::HashSet::new();
            for item in &items {
                if let Value::Object(m) = item {
                    for k in m.keys() {
                        if seen.insert(k.as_str()) {
                            cols.push((k.clone(), k.clone()));
                        }
                    }
                }
            }
        }
        if let Some(header) = &existing_header
            && maps > 0
        {
            // Appending must not silently drop data the file has no column for.
            for (i, item) in items.iter().enumerate() {
                if let Value::Object(m) = item
                    && let Some(k) = m.keys().find(|k| !cols.iter().any(|(key, _)| key == *k))
                {
                    bail!(
                        "cannot append row {} to {shown}: key `{k}` is not one of the file's columns ({})",
                        i + 1,
                        header.join(", ")
                    );
                }
            }
        }
        let mut grid_rows = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Value::Object(mut m) => {
                    grid_rows.push(
                        cols.iter()
                            .map(|(k, _)| m.remove(k).unwrap_or(Value::Null))
                            .collect(),
                    );
                }
                Value::Array(a) => grid_rows.push(a),
                _ => {}
            }
        }
        Ok(Grid {
            labels: cols.into_iter().map(|(_, l)| l).collect(),
            rows: grid_rows,
        })
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

fn csv_bytes(
    grid: &Grid,
    delimiter: u8,
    header: bool,
    terminator: csv::Terminator,
) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .terminator(terminator)
        .from_writer(Vec::new());
    if header && !grid.labels.is_empty() {
        w.write_record(&grid.labels)?;
    }
    for row in &grid.rows {
        w.write_record(row.iter().map(delimited::field))?;
    }
    w.into_inner()
        .map_err(|e| anyhow!("cannot build the CSV: {}", e.error()))
}

/// Largest integer Excel stores exactly (15 significant digits).
const EXCEL_EXACT: i64 = 999_999_999_999_999;

fn xlsx_bytes(
    grid: &Grid,
    sheet: &str,
    shown: &str,
    warnings: &mut Warnings,
) -> anyhow::Result<Vec<u8>> {
    const MAX_ROWS: usize = 1_048_576;
    let header_rows = usize::from(!grid.labels.is_empty());
    if grid.rows.len() + header_rows > MAX_ROWS {
        bail!(
            "cannot write {shown}: {} rows exceed the xlsx limit of {MAX_ROWS} rows per sheet",
            grid.rows.len()
        );
    }
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name(sheet)
        .map_err(|e| anyhow!("cannot write {shown}: invalid sheet name `{sheet}`: {e}"))?;
    let bold = Format::new().set_bold();
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let datetime = Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");
    let cell_err = |r: usize, c: usize, e: rust_xlsxwriter::XlsxError| {
        anyhow!(
            "cannot write cell {} of {shown}: {e}",
            address(r as u32, c as u32)
        )
    };
    for (c, label) in grid.labels.iter().enumerate() {
        let c16 = u16::try_from(c)
            .map_err(|_| anyhow!("cannot write {shown}: more than 16384 columns"))?;
        ws.write_string_with_format(0, c16, label, &bold)
            .map_err(|e| cell_err(0, c, e))?;
    }
    if header_rows == 1 {
        ws.set_freeze_panes(1, 0).map_err(|e| cell_err(0, 0, e))?;
    }
    for (i, row) in grid.rows.iter().enumerate() {
        let r = i + header_rows;
        let r32 = r as u32;
        for (c, v) in row.iter().enumerate() {
            let c16 = u16::try_from(c)
                .map_err(|_| anyhow!("cannot write {shown}: more than 16384 columns"))?;
            let res = match v {
                Value::Null => continue,
                Value::Bool(b) => ws.write_boolean(r32, c16, *b).map(|_| ()),
                Value::Number(n) => match n.as_i64() {
                    Some(i) if i.abs() > EXCEL_EXACT => {
                        warnings.push(|| {
                            format!(
                                "{}: {i} has more digits than Excel keeps; written as text",
                                address(r32, c as u32)
                            )
                        });
                        ws.write_string(r32, c16, i.to_string()).map(|_| ())
                    }
                    _ => match n.as_f64() {
                        Some(f) => ws.write_number(r32, c16, f).map(|_| ()),
                        None => ws.write_string(r32, c16, n.to_string()).map(|_| ()),
                    },
                },
                Value::String(s) => match iso_datetime(s) {
                    Some((dt, true)) => ws
                        .write_datetime_with_format(r32, c16, &dt, &datetime)
                        .map(|_| ()),
                    Some((dt, false)) => ws
                        .write_datetime_with_format(r32, c16, &dt, &date)
                        .map(|_| ()),
                    None => ws.write_string(r32, c16, s).map(|_| ()),
                },
                other => ws.write_string(r32, c16, other.to_string()).map(|_| ()),
            };
            res.map_err(|e| cell_err(r, c, e))?;
        }
    }
    ws.autofit();
    wb.save_to_buffer()
        .map_err(|e| anyhow!("cannot write {shown}: {e}"))
}

/// `2026-03-01` → a date; `2026-03-01T08:30:00` (or with a space, optional
/// fraction) → a datetime. Anything else — time zones, dates before 1900 that
/// Excel cannot show, impossible days — stays text.
fn iso_datetime(s: &str) -> Option<(ExcelDateTime, bool)> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|x| x.iter().all(u8::is_ascii_digit))
    };
    if b.len() < 10
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
    {
        return None;
    }
    let year: u16 = s[0..4].parse().ok()?;
    let month: u8 = s[5..7].parse().ok()?;
    let day: u8 = s[8..10].parse().ok()?;
    chrono::NaiveDate::from_ymd_opt(i32::from(year), u32::from(month), u32::from(day))?;
    if !(1900..=9999).contains(&year) {
        return None;
    }
    let date = ExcelDateTime::from_ymd(year, month, day).ok()?;
    if b.len() == 10 {
        return Some((date, false));
    }
    if b.len() < 19
        || !(b[10] == b'T' || b[10] == b' ')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return None;
    }
    let hour: u16 = s[11..13].parse().ok()?;
    let min: u8 = s[14..16].parse().ok()?;
    let mut sec: f64 = s[17..19].parse().ok()?;
    if b.len() > 19 {
        if b[19] != b'.' || !digits(20..b.len()) || b.len() == 20 {
            return None;
        }
        sec += s[19..].parse::<f64>().ok()?;
    }
    if hour > 23 {
        return None;
    }
    Some((date.and_hms(hour, min, sec).ok()?, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_strings_become_dates() {
        assert!(matches!(iso_datetime("2026-03-01"), Some((_, false))));
        assert!(matches!(
            iso_datetime("2026-03-01T08:30:00"),
            Some((_, true))
        ));
        assert!(matches!(
            iso_datetime("2026-03-01 08:30:00.5"),
            Some((_, true))
        ));
        for text in [
            "2026-02-30",
            "1899-12-31",
            "2026-03-01T08:30:00Z",
            "2026-3-1",
            "2026-03-01T25:00:00",
            "20260301",
            "2026-03-01T08:30",
        ] {
            assert!(iso_datetime(text).is_none(), "{text}");
        }
    }
}
