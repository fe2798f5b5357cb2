//! `sheet.read`: xlsx, xlsm, xlsb, xls and ods through calamine, CSV/TSV
//! through the csv crate. Decoding runs on a blocking thread, inside a panic
//! guard: calamine panics on some corrupt files, and a corrupt export must
//! fail its step with a clear message, never take the run down.

use std::io::Cursor;
use std::num::NonZeroU32;
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use calamine::{Data, DataRef, Ods, Range, Reader, SheetType, Xls, Xlsb, Xlsx, XlsxError};
use minijinja::value::Value as MValue;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::cells::{Rect, from_data, from_ref};
use super::delimited;
use super::rows::{Builder, Shape, ShapeError, Table};
use crate::actions::{Action, ActionContext, ActionError, ActionResult};
use crate::fsutil::sha256_hex;

/// Which sheet of a workbook: its name, or its 0-based position.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SheetRef {
    Index(u32),
    Name(String),
}

/// Arguments of `sheet.read`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadArgs {
    /// The file, relative to the workspace: `.xlsx`, `.xlsm`, `.xlsb`, `.xls`,
    /// `.ods`, `.csv` or `.tsv` (an unknown extension is recognised by content).
    pub path: String,
    /// The sheet: a name, or a 0-based position. Default: the first
    /// worksheet. Ignored for CSV (the result's `sheet` is the file name).
    #[serde(default)]
    pub sheet: Option<SheetRef>,
    /// Only the cells inside this range, e.g. `A1:F200` or `B:D`; the header
    /// is its first non-empty row.
    #[serde(default)]
    pub range: Option<String>,
    /// The sheet row (1-based) holding the column names; rows above it are
    /// skipped. Default: the first non-empty row (row 1 in a normal export).
    #[serde(default)]
    pub header_row: Option<NonZeroU32>,
    /// `false`: no header row, each row is a list of values.
    #[serde(default = "yes")]
    pub header: bool,
    /// CSV only: the delimiter, one character or `tab`. Default: guessed
    /// from the first line among `,` `;` and tab.
    #[serde(default)]
    pub delimiter: Option<String>,
    /// CSV only: the text encoding, `utf-8` (default), `windows-1252`,
    /// `latin-1`, ... An undecodable byte is an error naming its line.
    #[serde(default)]
    pub encoding: Option<String>,
    /// CSV only: turn `1001`, `12.5`, `true` into numbers and booleans
    /// (default true); `false` keeps every field as text.
    #[serde(default = "yes")]
    pub infer_types: bool,
    /// Skip rows without any value (default true).
    #[serde(default = "yes")]
    pub skip_empty_rows: bool,
    /// Stop after this many data rows (default: all).
    #[serde(default)]
    pub max_rows: Option<u64>,
    /// Refuse a cell holding more than this many bytes of text (default
    /// 1 MiB; Excel itself stops at 32,767 characters). Protects the run from a
    /// hostile file; raise it for a file you trust.
    #[serde(default)]
    pub max_cell_bytes: Option<u64>,
    /// Refuse a workbook part (a sheet's XML, the shared strings) that
    /// decompresses to more than this many bytes (default 512 MiB), checked
    /// before anything is decoded: a 1 MB xlsx can inflate to gigabytes.
    #[serde(default)]
    pub max_sheet_bytes: Option<u64>,
    /// Refuse a sheet with more than this many rows (default 5,000,000; Excel
    /// holds at most 1,048,576). Unlike `max_rows`, this is an error, not a stop.
    #[serde(default)]
    pub max_sheet_rows: Option<u64>,
}

/// Default limits of `sheet.read` (see the arguments).
pub const DEFAULT_MAX_CELL_BYTES: u64 = 1 << 20;
pub const DEFAULT_MAX_SHEET_BYTES: u64 = 512 << 20;
pub const DEFAULT_MAX_SHEET_ROWS: u64 = 5_000_000;

/// The decoding limits of one read.
#[derive(Debug, Clone, Copy)]
struct Limits {
    cell_bytes: usize,
    sheet_bytes: u64,
    sheet_rows: u32,
}

fn yes() -> bool {
    true
}

/// Reads a sheet into rows.
pub struct Read;

impl Action for Read {
    type Args = ReadArgs;
    const NAME: &'static str = "sheet.read";
    const SUMMARY: &'static str =
        "Read a spreadsheet (xlsx, xlsm, xlsb, xls, ods) or CSV into typed rows.";
    const EXAMPLE: &'static str = "- sheet.read: { path: exports/requests.xlsx, sheet: Requests, range: \"A1:H500\" }\n  save_as: requests\n";
    const SHORTHAND: Option<&'static str> = Some("path");
    const RESULT: &'static str = "{ rows: [ {column: value} ], columns, count, sheet }";

    async fn run(ctx: &mut ActionContext<'_>, args: Self::Args) -> ActionResult {
        let path = ctx.resolve(&args.path)?;
        let shown = ctx.display_path(&path);
        ctx.target(shown.clone());
        ctx.detail("path", shown.clone());
        let cancel = ctx.cancel.clone();
        let shown_in = shown.clone();
        let read = tokio::task::spawn_blocking(move || read_path(&path, &shown_in, &args, &cancel))
            .await
            .context("the sheet reader task failed")?;
        let (sha, outcome) = read.map_err(ActionError::permanent)?;
        ctx.detail("sha256", sha);
        let (sheet, table) = outcome.map_err(ActionError::permanent)?;
        ctx.detail("sheet", sheet.clone());
        ctx.detail("rows", table.rows.len() as u64);
        ctx.detail("columns", table.columns.len() as u64);
        // What was read, for the auditor: the header (the rows themselves are
        // summarised by the file's SHA-256 above and the count).
        ctx.detail("column_names", table.columns.clone());
        ctx.detail("warnings", table.warnings.listed.clone());
        if table.warnings.total > table.warnings.listed.len() {
            ctx.detail("warning_count", table.warnings.total as u64);
        }
        if table.truncated {
            ctx.detail("truncated", true);
        }
        for w in &table.warnings.listed {
            tracing::warn!(file = %shown, "{w}");
        }
        let count = table.rows.len();
        // The rows stay a compact grid (see `grid`); the JSON result only
        // summarises them, for callers that look at JSON.
        let summary = json!({ "columns": table.columns, "count": count, "sheet": sheet });
        ctx.set_result(MValue::from_iter([
            ("rows", table.rows.into_value()),
            ("columns", MValue::from(table.columns)),
            ("count", MValue::from(count)),
            ("sheet", MValue::from(sheet)),
        ]));
        Ok(summary)
    }
}

/// What a read gives: the file's SHA-256 (also when decoding fails, for the
/// audit), then the sheet name and the table or the decoding error.
pub type ReadOutcome = (String, anyhow::Result<(String, Table)>);

/// Reads a sheet file, blocking (the action runs it on a blocking thread; the
/// benchmark calls it directly, so it measures exactly what `sheet.read` does).
/// The outer error is for problems before any byte is decoded (bad
/// arguments, a missing file).
pub fn read_path(
    path: &Path,
    shown: &str,
    args: &ReadArgs,
    cancel: &CancellationToken,
) -> anyhow::Result<ReadOutcome> {
    let request = Request::new(args, path, shown)?;
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow!("cannot read {shown}: no such file"),
        _ => anyhow!("cannot read {shown}: {e}"),
    })?;
    let sha = sha256_hex(&bytes);
    let outcome = super::guard(|| request.read(bytes, cancel))
        .map_err(|_| {
            anyhow!("cannot read {shown}: the file is corrupt (the spreadsheet decoder stopped on malformed data)")
        })
        .and_then(|r| r);
    Ok((sha, outcome))
}

/// The file formats clerk reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Csv { tab: bool },
    Xlsx,
    Xlsb,
    Xls,
    Ods,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Csv { tab: false } => "CSV",
            Format::Csv { tab: true } => "TSV",
            Format::Xlsx => "xlsx",
            Format::Xlsb => "xlsb",
            Format::Xls => "xls",
            Format::Ods => "ods",
        }
    }
}

/// Everything the blocking reader needs, checked before the file is opened.
struct Request {
    shown: String,
    ext: String,
    stem: String,
    sheet: Option<SheetRef>,
    shape: Shape,
    delimiter: Option<u8>,
    encoding: Option<String>,
    infer_types: bool,
    limits: Limits,
}

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const OLE_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

impl Request {
    fn new(args: &ReadArgs, path: &Path, shown: &str) -> anyhow::Result<Request> {
        let range = match &args.range {
            None => None,
            Some(text) => Some(Rect::parse(text).ok_or_else(|| {
                anyhow!(
                    "`range` `{text}` is not a cell range like `A1:F200` or `B:D` (reading {shown})"
                )
            })?),
        };
        let header_row = args.header_row.map(|n| n.get() - 1);
        if let (Some(h), Some(r)) = (header_row, range)
            && !(r.top..=r.bottom).contains(&h)
        {
            bail!(
                "`header_row` {} is outside `range` {r} (reading {shown})",
                h + 1
            );
        }
        let max_rows = args
            .max_rows
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        let delimiter = args
            .delimiter
            .as_deref()
            .map(delimited::parse_delimiter)
            .transpose()?;
        Ok(Request {
            shown: shown.to_string(),
            ext: path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("")
                .to_ascii_lowercase(),
            stem: path
                .file_stem()
                .and_then(|e| e.to_str())
                .unwrap_or("")
                .to_string(),
            sheet: args.sheet.clone(),
            shape: Shape {
                header: args.header,
                header_row,
                range,
                skip_empty_rows: args.skip_empty_rows,
                max_rows,
            },
            delimiter,
            encoding: args.encoding.clone(),
            infer_types: args.infer_types,
            limits: Limits {
                cell_bytes: usize::try_from(args.max_cell_bytes.unwrap_or(DEFAULT_MAX_CELL_BYTES))
                    .unwrap_or(usize::MAX),
                sheet_bytes: args.max_sheet_bytes.unwrap_or(DEFAULT_MAX_SHEET_BYTES),
                sheet_rows: u32::try_from(args.max_sheet_rows.unwrap_or(DEFAULT_MAX_SHEET_ROWS))
                    .unwrap_or(u32::MAX),
            },
        })
    }

    /// Picks the reader from the extension, checked against the content, so
    /// that a text file named `.xlsx` gets a clear message instead of a zip error.
    fn format(&self, bytes: &[u8]) -> anyhow::Result<Format> {
        let shown = &self.shown;
        let zip = bytes.starts_with(ZIP_MAGIC);
        let ole = bytes.starts_with(OLE_MAGIC);
        let ods = zip
            && bytes
                .windows(46)
                .take(200)
                .any(|w| w == b"application/vnd.oasis.opendocument.spreadsheet");
        let format = match self.ext.as_str() {
            "csv" | "txt" => return Ok(Format::Csv { tab: false }),
            "tsv" | "tab" => return Ok(Format::Csv { tab: true }),
            "xlsb" => Format::Xlsb,
            "xls" | "xla" => Format::Xls,
            "ods" => Format::Ods,
            "xlsx" | "xlsm" | "xlam" | "xltx" | "xltm" => Format::Xlsx,
            _ if ods => return Ok(Format::Ods),
            _ if zip => return Ok(Format::Xlsx),
            _ if ole => return Ok(Format::Xls),
            other => {
                let ext = if other.is_empty() {
                    "it has no extension".to_string()
                } else {
                    format!("`.{other}` is not a spreadsheet extension")
                };
                bail!(
                    "cannot read {shown}: {ext} and the content is not a workbook; use .xlsx, .xlsm, .xlsb, .xls, .ods, .csv or .tsv"
                )
            }
        };
        if bytes.is_empty() {
            bail!(
                "cannot read {shown}: the file is empty (0 bytes), not an {} workbook",
                format.name()
            );
        }
        if ole && format != Format::Xls && is_encrypted_ole(bytes) {
            bail!(
                "{shown} is password-protected (an encrypted workbook); clerk cannot read it — save an unprotected copy"
            );
        }
        if ole && ole_truncated(bytes) {
            bail!(
                "cannot read {shown}: the file is truncated or corrupt (its OLE container declares more sectors than the file holds)"
            );
        }
        Ok(match (format, zip, ole) {
            (_, true, _) if ods => Format::Ods,
            (Format::Xls, true, _) => Format::Xlsx, // an xlsx named .xls (common with exports)
            (Format::Xlsx | Format::Ods | Format::Xlsb, _, true) => Format::Xls,
            (f, false, false) => bail!(
                "cannot read {shown}: it is not a spreadsheet (an {} workbook is a zip or OLE file; this file is neither)",
                f.name()
            ),
            (f, _, _) => f,
        })
    }

    fn read(self, bytes: Vec<u8>, cancel: &CancellationToken) -> anyhow::Result<(String, Table)> {
        let format = self.format(&bytes)?;
        let shown = self.shown.clone();
        if bytes.starts_with(ZIP_MAGIC) {
            super::zipcheck::check_declared_sizes(&bytes, self.limits.sheet_bytes, &shown)?;
        }
        let limits = self.limits;
        let mut builder = Builder::new(self.shape.clone());
        let sheet = match format {
            Format::Csv { tab } => {
                let text = delimited::decode(&bytes, self.encoding.as_deref(), &shown)?;
                drop(bytes);
                let delimiter = self.delimiter.unwrap_or_else(|| {
                    if tab {
                        b'\t'
                    } else {
                        delimited::detect_delimiter(&text)
                    }
                });
                delimited::read_into(
                    &text,
                    delimiter,
                    self.infer_types,
                    &mut builder,
                    &shown,
                    cancel,
                    limits.cell_bytes,
                )?;
                self.stem.clone()
            }
            Format::Xlsx => {
                let mut wb: Xlsx<_> =
                    Xlsx::new(Cursor::new(bytes)).map_err(|e| self.open_error(format, e))?;
                let name = self.pick_sheet(wb.sheets_metadata())?;
                match wb.worksheet_cells_reader(&name) {
                    // A chart sheet or an empty `<sheetData/>`: no cells.
                    Err(XlsxError::NotAWorksheet(_)) => {}
                    Err(e) => return Err(self.sheet_error(format, &name, e)),
                    Ok(mut cells) => pipeline(&mut builder, cancel, limits, &shown, || {
                        cells
                            .next_cell()
                            .map(|c| c.map(|c| (c.get_position(), c.get_value().clone())))
                            .map_err(|e| self.sheet_error(format, &name, e))
                    })?,
                }
                name
            }
            Format::Xlsb => {
                let mut wb: Xlsb<_> =
                    Xlsb::new(Cursor::new(bytes)).map_err(|e| self.open_error(format, e))?;
                let name = self.pick_sheet(wb.sheets_metadata())?;
                let mut cells = wb
                    .worksheet_cells_reader(&name)
                    .map_err(|e| self.sheet_error(format, &name, e))?;
                pipeline(&mut builder, cancel, limits, &shown, || {
                    cells
                        .next_cell()
                        .map(|c| c.map(|c| (c.get_position(), c.get_value().clone())))
                        .map_err(|e| self.sheet_error(format, &name, e))
                })?;
                name
            }
            Format::Xls => {
                let mut wb: Xls<_> =
                    Xls::new(Cursor::new(bytes)).map_err(|e| self.open_error(format, e))?;
                let name = self.pick_sheet(wb.sheets_metadata())?;
                let range = wb
                    .worksheet_range(&name)
                    .map_err(|e| self.sheet_error(format, &name, e))?;
                feed_range(&range, false, &mut builder);
                name
            }
            Format::Ods => {
                let mut wb: Ods<_> =
                    Ods::new(Cursor::new(bytes)).map_err(|e| self.open_error(format, e))?;
                let name = self.pick_sheet(wb.sheets_metadata())?;
                let range = wb
                    .worksheet_range(&name)
                    .map_err(|e| self.sheet_error(format, &name, e))?;
                feed_range(&range, true, &mut builder);
                name
            }
        };
        let table = builder.finish().map_err(|e| match e {
            ShapeError::RangeOutside { range, data } => anyhow!(
                "`range` {range} holds no data in sheet `{sheet}` of {shown}: the data spans {data}"
            ),
        })?;
        Ok((sheet, table))
    }

    /// The sheet asked for, or the first worksheet; an unknown name lists the sheets.
    fn pick_sheet(&self, sheets: &[calamine::Sheet]) -> anyhow::Result<String> {
        let shown = &self.shown;
        let list = || {
            sheets
                .iter()
                .map(|s| format!("`{}`", s.name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match &self.sheet {
            None => sheets
                .iter()
                .find(|s| s.typ == SheetType::WorkSheet)
                .or(sheets.first())
                .map(|s| s.name.clone())
                .ok_or_else(|| anyhow!("cannot read {shown}: the workbook lists no sheets (it may be corrupt)")),
            Some(SheetRef::Name(name)) => {
                if let Some(s) = sheets.iter().find(|s| &s.name == name) {
                    return Ok(s.name.clone());
                }
                let hint = sheets
                    .iter()
                    .find(|s| s.name.trim().eq_ignore_ascii_case(name.trim()))
                    .map(|s| format!(" (did you mean `{}`?)", s.name))
                    .unwrap_or_default();
                bail!("sheet `{name}` not found in {shown}{hint}; its sheets are {}", list())
            }
            Some(SheetRef::Index(i)) => sheets
                .get(*i as usize)
                .map(|s| s.name.clone())
                .ok_or_else(|| {
                    anyhow!(
                        "sheet index {i} is out of range: {shown} has {} sheet(s) ({}), counted from 0",
                        sheets.len(),
                        list()
                    )
                }),
        }
    }

    fn open_error(&self, format: Format, e: impl std::fmt::Display) -> anyhow::Error {
        let shown = &self.shown;
        let text = e.to_string();
        if text.contains("password protected") {
            return anyhow!(
                "{shown} is password-protected (an encrypted workbook); clerk cannot read it — save an unprotected copy"
            );
        }
        anyhow!(
            "cannot read {shown}: it is not a valid {} workbook or it is corrupt ({})",
            format.name(),
            lowercase_first(&text)
        )
    }

    fn sheet_error(&self, format: Format, sheet: &str, e: impl std::fmt::Display) -> anyhow::Error {
        anyhow!(
            "cannot read sheet `{sheet}` of {}: the {} data is corrupt ({})",
            self.shown,
            format.name(),
            lowercase_first(&e.to_string())
        )
    }
}

/// Streams cells from calamine's cell reader (on this thread) to the row
/// builder (on a second thread), in bounded batches: decoding the XML and
/// building the result overlap, which keeps `sheet.read` close to calamine's
/// own speed. A `max_rows` stop on the builder side ends the decoding too.
fn pipeline<'a>(
    builder: &mut Builder,
    cancel: &CancellationToken,
    limits: Limits,
    shown: &str,
    mut next: impl FnMut() -> anyhow::Result<Option<((u32, u32), DataRef<'a>)>>,
) -> anyhow::Result<()> {
    const BATCH: usize = 4096;
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<((u32, u32), DataRef<'a>)>>(4);
        let consumer = scope.spawn(move || {
            super::quiet_thread();
            for batch in rx {
                for ((row, col), value) in batch {
                    if builder.push(row, col, from_ref(&value)).is_break() {
                        return;
                    }
                }
            }
        });
        let mut batch = Vec::with_capacity(BATCH);
        let result = loop {
            match next() {
                Ok(Some(cell)) => {
                    if let Err(e) = within_limits(&cell, limits, shown) {
                        break Err(e);
                    }
                    batch.push(cell);
                    if batch.len() == BATCH {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                        if tx.send(full).is_err() {
                            break Ok(()); // the builder has all it wants
                        }
                        if cancel.is_cancelled() {
                            break Err(anyhow!("cancelled"));
                        }
                    }
                }
                Ok(None) => {
                    let _ = tx.send(batch);
                    break Ok(());
                }
                Err(e) => break Err(e),
            }
        };
        drop(tx);
        if let Err(panic) = consumer.join() {
            std::panic::resume_unwind(panic);
        }
        result
    })
}

/// A cell beyond `max_sheet_rows`, or with more text than `max_cell_bytes`.
fn within_limits(
    cell: &((u32, u32), DataRef<'_>),
    limits: Limits,
    shown: &str,
) -> anyhow::Result<()> {
    let ((row, col), value) = cell;
    if *row >= limits.sheet_rows {
        bail!(
            "{shown} has more than {} rows (`max_sheet_rows`); refusing to read it — raise `max_sheet_rows` on the step if the file is trusted",
            limits.sheet_rows
        );
    }
    let len = match value {
        DataRef::String(s) => s.len(),
        DataRef::SharedString(s) => s.len(),
        _ => 0,
    };
    if len > limits.cell_bytes {
        let cell = format!("{}{}", super::cells::col_name(*col), row + 1);
        bail!(
            "cell {cell} of {shown} holds {len} bytes of text, over the limit of {} (`max_cell_bytes`); refusing to read it",
            limits.cell_bytes
        );
    }
    Ok(())
}

fn feed_range(range: &Range<Data>, ods: bool, builder: &mut Builder) {
    let (top, left) = range.start().unwrap_or((0, 0));
    for (r, c, d) in range.used_cells() {
        let (Ok(r), Ok(c)) = (u32::try_from(r), u32::try_from(c)) else {
            continue;
        };
        if builder
            .push(
                top.saturating_add(r),
                left.saturating_add(c),
                from_data(d, ods),
            )
            .is_break()
        {
            break;
        }
    }
}

/// Whether an OLE compound file is shorter than its allocation table says.
/// calamine reads only the streams it needs, so a cut-off xls whose tail
/// held other streams would otherwise read "fine"; a truncated file is
/// reported instead of trusted.
fn ole_truncated(bytes: &[u8]) -> bool {
    let u16_at = |o: usize| {
        bytes
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (Some(shift), Some(fat_count)) = (u16_at(30), u32_at(44)) else {
        return true;
    };
    if shift != 9 && shift != 12 {
        return true;
    }
    let sector = 1usize << shift;
    let header = sector.max(512);
    let mut highest_used: Option<usize> = None;
    for k in 0..(fat_count.min(109) as usize) {
        let Some(fat_sector) = u32_at(76 + 4 * k) else {
            return true;
        };
        let start = header.saturating_add((fat_sector as usize).saturating_mul(sector));
        let Some(fat) = bytes.get(start..start.saturating_add(sector)) else {
            return true;
        };
        for (i, entry) in fat.chunks_exact(4).enumerate() {
            let e = u32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]);
            if e != 0xFFFF_FFFF {
                highest_used = Some(k * (sector / 4) + i);
            }
        }
    }
    let needed = highest_used.map_or(header, |h| {
        header.saturating_add((h + 1).saturating_mul(sector))
    });
    bytes.len() < needed
}

/// An OLE file holding an `EncryptionInfo` stream is an encrypted OOXML package.
fn is_encrypted_ole(bytes: &[u8]) -> bool {
    let needle: Vec<u8> = "EncryptionInfo"
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    bytes.windows(needle.len()).any(|w| w == needle.as_slice())
}

fn lowercase_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}
