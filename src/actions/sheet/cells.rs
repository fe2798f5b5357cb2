//! Cell values: calamine's cell types turned into JSON values, cell addresses
//! (`A1`, `C7`, `A1:F200`), and the type inference used for CSV fields.
//!
//! Conversion rules (the same for every format so that a playbook does not
//! care where its data came from): integer-valued floats become integers
//! (spreadsheets store `1001` as a float), dates become ISO 8601 strings,
//! error cells become null plus a warning.

use calamine::{Data, DataRef, ExcelDateTime};
use chrono::{Datelike, Timelike};
// Cells are template values (24 bytes, short text inline) rather than JSON:
// they go into a compact grid (see `grid`) without another conversion.
use minijinja::value::Value;

/// One decoded cell.
pub enum Cell {
    /// No value (absent, blank or an empty string).
    Empty,
    Value(Value),
    /// An error cell (`#N/A`, `#REF!`, ...): read as null, reported as a warning.
    Error(String),
}

/// Largest integer a float holds exactly (2^53); bigger whole floats stay floats.
const EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// The error literals spreadsheets show; calamine's ODS reader returns them as
/// text, so for ODS a text cell holding exactly one of them is an error cell.
const ERROR_LITERALS: &[&str] = &[
    "#N/A", "#REF!", "#DIV/0!", "#VALUE!", "#NAME?", "#NUM!", "#NULL!",
];

pub fn float(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < EXACT_INT {
        Value::from(f as i64)
    } else if f.is_finite() {
        Value::from(f)
    } else {
        Value::from(())
    }
}

fn text(s: &str, ods: bool) -> Cell {
    if s.is_empty() {
        Cell::Empty
    } else if ods && ERROR_LITERALS.contains(&s) {
        Cell::Error(s.to_string())
    } else {
        Cell::Value(Value::from(s))
    }
}

/// An Excel serial date/time as ISO 8601. calamine's `as_datetime` knows the
/// 1900 leap-year quirk (serials below 61) and 1904-based workbooks.
fn excel_datetime(dt: &ExcelDateTime) -> Cell {
    let serial = dt.as_f64();
    if dt.is_duration() {
        return Cell::Value(Value::from(iso_duration(serial)));
    }
    // A serial below one day is a time of day (a cell formatted `hh:mm`).
    if (0.0..1.0).contains(&serial) && serial != 0.0 {
        let secs = (serial * 86_400.0).round() as u64;
        return Cell::Value(Value::from(format!(
            "{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )));
    }
    // Formatted by hand: chrono's `format` re-parses its pattern per call,
    // which shows in a 100,000-row profile.
    match dt.as_datetime() {
        Some(d) => {
            let (date, time) = (d.date(), d.time());
            let day = format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day());
            let text = if time == chrono::NaiveTime::MIN {
                day
            } else if time.nanosecond() == 0 {
                format!(
                    "{day}T{:02}:{:02}:{:02}",
                    time.hour(),
                    time.minute(),
                    time.second()
                )
            } else {
                format!(
                    "{day}T{:02}:{:02}:{:02}.{:03}",
                    time.hour(),
                    time.minute(),
                    time.second(),
                    time.nanosecond() / 1_000_000
                )
            };
            Cell::Value(Value::from(text))
        }
        None => Cell::Value(float(serial)),
    }
}

fn iso_duration(days: f64) -> String {
    let total = (days * 86_400.0).round() as i64;
    let sign = if total < 0 { "-" } else { "" };
    let t = total.abs();
    format!("{sign}PT{}H{}M{}S", t / 3600, t / 60 % 60, t % 60)
}

/// A cell from the streaming readers (xlsx, xlsb).
/// (calamine's `Cell` lends its value, so inline strings are copied once here.)
pub fn from_ref(d: &DataRef<'_>) -> Cell {
    match d {
        DataRef::Empty => Cell::Empty,
        DataRef::Int(i) => Cell::Value(Value::from(*i)),
        DataRef::Float(f) => Cell::Value(float(*f)),
        DataRef::Bool(b) => Cell::Value(Value::from(*b)),
        DataRef::SharedString(s) => text(s, false),
        DataRef::String(s) => text(s, false),
        DataRef::DateTime(dt) => excel_datetime(dt),
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => text(s, false),
        DataRef::Error(e) => Cell::Error(e.to_string()),
    }
}

/// A cell from the whole-sheet readers (xls, ods).
pub fn from_data(d: &Data, ods: bool) -> Cell {
    match d {
        Data::Empty => Cell::Empty,
        Data::Int(i) => Cell::Value(Value::from(*i)),
        Data::Float(f) => Cell::Value(float(*f)),
        Data::Bool(b) => Cell::Value(Value::from(*b)),
        Data::String(s) => text(s, ods),
        Data::DateTime(dt) => excel_datetime(dt),
        Data::DateTimeIso(s) | Data::DurationIso(s) => text(s, false),
        Data::Error(e) => Cell::Error(e.to_string()),
    }
}

/// A CSV field: `1001` → integer, `12.5` → float, `true`/`false` → boolean,
/// empty → null, anything else (dates included) stays text. Numbers with a
/// leading zero (`0042`, postcodes, account numbers) stay text.
pub fn infer(field: &str) -> Value {
    if field.is_empty() {
        return Value::from(());
    }
    if field.eq_ignore_ascii_case("true") {
        return Value::from(true);
    }
    if field.eq_ignore_ascii_case("false") {
        return Value::from(false);
    }
    let digits = field.strip_prefix('-').unwrap_or(field);
    let (int_part, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let no_leading_zero = int_part == "0" || !int_part.starts_with('0');
    if plain(int_part) && no_leading_zero {
        match frac {
            None => {
                if let Ok(i) = field.parse::<i64>() {
                    return Value::from(i);
                }
            }
            Some(f) if plain(f) => {
                if let Some(n) = field.parse::<f64>().ok().filter(|f| f.is_finite()) {
                    return Value::from(n);
                }
            }
            Some(_) => {}
        }
    }
    Value::from(field)
}

/// `0` → `A`, `25` → `Z`, `26` → `AA`.
pub fn col_name(mut col: u32) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'A' + (col % 26) as u8);
        if col < 26 {
            break;
        }
        col = col / 26 - 1;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// `(0, 0)` → `A1`.
pub fn address(row: u32, col: u32) -> String {
    format!("{}{}", col_name(col), u64::from(row) + 1)
}

/// A rectangle of cells, 0-based and inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub top: u32,
    pub left: u32,
    pub bottom: u32,
    pub right: u32,
}

impl Rect {
    pub fn cell(row: u32, col: u32) -> Rect {
        Rect {
            top: row,
            left: col,
            bottom: row,
            right: col,
        }
    }

    pub fn contains(&self, row: u32, col: u32) -> bool {
        (self.top..=self.bottom).contains(&row) && (self.left..=self.right).contains(&col)
    }

    pub fn grow(&mut self, row: u32, col: u32) {
        self.top = self.top.min(row);
        self.bottom = self.bottom.max(row);
        self.left = self.left.min(col);
        self.right = self.right.max(col);
    }

    /// Parses `A1:F200`, `B2` or whole columns `A:F`.
    pub fn parse(text: &str) -> Option<Rect> {
        let (a, b) = text
            .trim()
            .split_once(':')
            .unwrap_or((text.trim(), text.trim()));
        let (r0, c0) = parse_ref(a)?;
        let (r1, c1) = parse_ref(b)?;
        let (top, bottom) = match (r0, r1) {
            (Some(t), Some(b)) => (t, b),
            (None, None) => (0, 1_048_575),
            _ => return None,
        };
        if top > bottom || c0 > c1 {
            return None;
        }
        Some(Rect {
            top,
            left: c0,
            bottom,
            right: c1,
        })
    }
}

impl std::fmt::Display for Rect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}",
            address(self.top, self.left),
            address(self.bottom, self.right)
        )
    }
}

/// `C7` → (Some(6), 2); `C` → (None, 2). Limits are Excel's (XFD, 1048576).
fn parse_ref(s: &str) -> Option<(Option<u32>, u32)> {
    let s = s.trim().replace('$', "");
    let split = s.find(|c: char| c.is_ascii_digit()).unwrap_or(s.len());
    let (letters, digits) = s.split_at(split);
    if letters.is_empty() || letters.len() > 3 || !letters.bytes().all(|b| b.is_ascii_alphabetic())
    {
        return None;
    }
    let mut col: u32 = 0;
    for b in letters.bytes() {
        col = col * 26 + u32::from(b.to_ascii_uppercase() - b'A') + 1;
    }
    let col = col - 1;
    if col >= 16_384 {
        return None;
    }
    if digits.is_empty() {
        return Some((None, col));
    }
    let row: u32 = digits.parse().ok()?;
    if row == 0 || row > 1_048_576 {
        return None;
    }
    Some((Some(row - 1), col))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ranges() {
        assert_eq!(col_name(0), "A");
        assert_eq!(col_name(25), "Z");
        assert_eq!(col_name(26), "AA");
        assert_eq!(col_name(16_383), "XFD");
        assert_eq!(address(0, 2), "C1");
        let r = Rect::parse("B2:$D$10").unwrap();
        assert_eq!((r.top, r.left, r.bottom, r.right), (1, 1, 9, 3));
        assert_eq!(Rect::parse("A:C").unwrap().bottom, 1_048_575);
        assert_eq!(Rect::parse("C3").unwrap(), Rect::cell(2, 2));
        for bad in ["", "A0", "1A", "D1:A1", "XFE1", "A1:B", "A1048577", "ABCD1"] {
            assert!(Rect::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(
            Rect::parse("A1:XFD1048576").unwrap().to_string(),
            "A1:XFD1048576"
        );
    }

    fn json(v: Value) -> serde_json::Value {
        crate::template::to_json(&v)
    }

    #[test]
    fn csv_inference() {
        assert_eq!(json(infer("1001")), serde_json::json!(1001));
        assert_eq!(json(infer("-3")), serde_json::json!(-3));
        assert_eq!(json(infer("40.0")), serde_json::json!(40.0));
        assert_eq!(json(infer("0.25")), serde_json::json!(0.25));
        assert_eq!(json(infer("TRUE")), serde_json::Value::Bool(true));
        assert_eq!(json(infer("")), serde_json::Value::Null);
        for text in [
            "0042",
            "2026-03-01",
            "1e5",
            "12,5",
            "1.",
            ".5",
            "-",
            "99999999999999999999",
        ] {
            assert_eq!(json(infer(text)), serde_json::json!(text), "{text}");
        }
    }

    #[test]
    fn floats_that_hold_integers_become_integers() {
        assert_eq!(json(float(1001.0)), serde_json::json!(1001));
        assert_eq!(json(float(12.5)), serde_json::json!(12.5));
        assert_eq!(json(float(f64::NAN)), serde_json::Value::Null);
    }
}
