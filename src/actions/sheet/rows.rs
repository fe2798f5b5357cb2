//! From a stream of cells to rows: header naming, empty rows, `range`,
//! `max_rows`, warnings. Every reader (xlsx, xlsb, xls, ods, CSV) feeds cells
//! here, so the rules are the same for every format.
//!
//! Memory: cells are kept once, as template values grouped by row; `finish`
//! moves them into the result grid (no copy), so a read holds one decoded
//! copy of the data plus the result at most — never a grid sized by the
//! sheet's declared dimension. The result is a [`Grid`]: one flat vector of
//! cells and one shared header, not a map per row.

use std::ops::ControlFlow;

use minijinja::value::Value;

use super::cells::{Cell, Rect, address, col_name};
use super::grid::Grid;

fn null() -> Value {
    Value::from(())
}

/// How many warnings are listed in the audit detail; the rest are counted.
pub const MAX_LISTED_WARNINGS: usize = 50;

/// What to read, from the action's arguments.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    /// Rows are maps keyed by a header row (true) or plain lists (false).
    pub header: bool,
    /// The header row (0-based sheet row); default: the first non-empty row.
    pub header_row: Option<u32>,
    pub range: Option<Rect>,
    pub skip_empty_rows: bool,
    pub max_rows: Option<usize>,
}

/// Warnings for the audit: the first few listed, all counted.
#[derive(Debug, Default)]
pub struct Warnings {
    pub listed: Vec<String>,
    pub total: usize,
}

impl Warnings {
    pub fn push(&mut self, w: impl FnOnce() -> String) {
        if self.listed.len() < MAX_LISTED_WARNINGS {
            self.listed.push(w());
        }
        self.total += 1;
    }
}

/// The outcome of a read.
#[derive(Debug)]
pub struct Table {
    pub rows: Grid,
    pub columns: Vec<String>,
    pub warnings: Warnings,
    /// Whether `max_rows` cut the read short.
    pub truncated: bool,
}

/// Why a set of cells gives no table.
#[derive(Debug)]
pub enum ShapeError {
    /// `range` holds no cell although the sheet has data (in `data`).
    RangeOutside { range: Rect, data: Rect },
}

struct RawRow {
    idx: u32,
    /// (column, value); nulls stand for error cells (they keep their column).
    cells: Vec<(u32, Value)>,
    /// Whether any cell has a real value (a row of error cells is empty).
    has_value: bool,
}

/// The fast path, taken when the header row is complete and no `range` is
/// set: columns are the header's, and each data row becomes its result row
/// as soon as the next row starts, so no second copy of the data piles up.
/// A cell outside the header's columns or out of row order abandons the
/// plan (the built rows are turned back into raw rows) and `finish` does the
/// general work.
struct Plan {
    header_idx: u32,
    left: u32,
    right: u32,
    columns: Vec<String>,
    header_cells: Vec<(u32, Value)>,
    /// The built rows' cells, `columns.len()` per row.
    built: Vec<Value>,
    built_idx: Vec<u32>,
    next_expected: u32,
    /// Warning counts before the header was named (restored on abandon).
    warnings_before: (usize, usize),
}

/// Collects cells (in any order, though row order is the fast path).
pub struct Builder {
    shape: Shape,
    rows: Vec<RawRow>,
    /// Bounding box of every non-empty cell of the sheet (for error messages).
    sheet_box: Option<Rect>,
    /// Bounding box of the cells kept (inside `range`).
    kept_box: Option<Rect>,
    warnings: Warnings,
    truncated: bool,
    /// Data rows with a value that are complete (a later row has started).
    completed: usize,
    /// The first row with a kept cell.
    first_idx: Option<u32>,
    plan: Option<Plan>,
    /// Whether the fast path was ruled out (tried once).
    no_plan: bool,
}

impl Builder {
    pub fn new(shape: Shape) -> Builder {
        Builder {
            rows: Vec::new(),
            sheet_box: None,
            kept_box: None,
            warnings: Warnings::default(),
            truncated: false,
            completed: 0,
            first_idx: None,
            no_plan: shape_rules_out_plan(&shape),
            plan: None,
            shape,
        }
    }

    /// Adds one cell; `Break` once `max_rows` data rows are complete.
    pub fn push(&mut self, row: u32, col: u32, cell: Cell) -> ControlFlow<()> {
        let (value, is_value) = match cell {
            Cell::Empty => return ControlFlow::Continue(()),
            Cell::Value(v) => (v, true),
            Cell::Error(e) => {
                if self.shape.range.is_none_or(|r| r.contains(row, col)) {
                    self.warnings
                        .push(|| format!("{}: error value {e} read as null", address(row, col)));
                }
                (null(), false)
            }
        };
        match &mut self.sheet_box {
            Some(b) => b.grow(row, col),
            None => self.sheet_box = Some(Rect::cell(row, col)),
        }
        if let Some(r) = self.shape.range
            && !r.contains(row, col)
        {
            return ControlFlow::Continue(());
        }
        if let Some(h) = self.shape.header_row
            && row < h
        {
            return ControlFlow::Continue(());
        }
        if self.first_idx.is_none() {
            self.first_idx = Some(row);
        }
        if let Some(plan) = &self.plan {
            let behind = plan.built_idx.last().is_some_and(|b| row <= *b)
                || row <= plan.header_idx
                || self.rows.last().is_some_and(|l| row < l.idx);
            if col < plan.left || col > plan.right || behind {
                self.abandon_plan();
            }
        }
        let new_row = self.rows.last().is_none_or(|last| last.idx < row);
        if new_row && self.plan.is_none() && !self.no_plan && !self.rows.is_empty() {
            self.try_plan();
        }
        if new_row {
            if let Some(last) = self.rows.last()
                && last.has_value
                && last.idx >= self.data_start()
            {
                self.completed += 1;
            }
            if self.enough_rows(row) {
                self.truncated = true;
                return ControlFlow::Break(());
            }
            if self.plan.is_some() {
                self.materialize();
            }
        }
        match &mut self.kept_box {
            Some(b) => b.grow(row, col),
            None => self.kept_box = Some(Rect::cell(row, col)),
        }
        let slot = match self.rows.last() {
            Some(last) if last.idx == row => self.rows.len() - 1,
            Some(last) if last.idx > row => {
                // Out of row order (rare; hand-made files): find or insert.
                match self.rows.binary_search_by_key(&row, |r| r.idx) {
                    Ok(i) => i,
                    Err(i) => {
                        self.rows.insert(i, RawRow::new(row));
                        i
                    }
                }
            }
            last => {
                // Rows of one sheet are alike: size the new row like the last.
                let hint = last.map_or(0, |r| r.cells.len());
                self.rows.push(RawRow {
                    idx: row,
                    cells: Vec::with_capacity(hint),
                    has_value: false,
                });
                self.rows.len() - 1
            }
        };
        let raw = &mut self.rows[slot];
        raw.cells.push((col, value));
        raw.has_value |= is_value;
        ControlFlow::Continue(())
    }

    /// Starts the fast path if the rows so far are exactly the header row.
    fn try_plan(&mut self) {
        self.no_plan = true;
        let header_idx = self.shape.header_row.or(self.first_idx).unwrap_or(0);
        let (Some(kept), [header]) = (self.kept_box, self.rows.as_slice()) else {
            return;
        };
        if header.idx != header_idx {
            return;
        }
        let header_cells = header.cells.clone();
        let warnings_before = (self.warnings.listed.len(), self.warnings.total);
        let width = (kept.right - kept.left + 1) as usize;
        let columns = name_columns(
            header_idx,
            kept.left,
            width,
            header_cells.clone(),
            &mut self.warnings,
        );
        self.rows.clear();
        self.plan = Some(Plan {
            header_idx,
            left: kept.left,
            right: kept.right,
            columns,
            header_cells,
            built: Vec::new(),
            built_idx: Vec::new(),
            next_expected: header_idx.saturating_add(1),
            warnings_before,
        });
    }

    /// Turns the completed raw row into its result row (fast path).
    fn materialize(&mut self) {
        let (Some(plan), Some(raw)) = (self.plan.as_mut(), self.rows.pop()) else {
            return;
        };
        if !self.shape.skip_empty_rows {
            while plan.next_expected < raw.idx {
                empty_row(&mut plan.built, plan.columns.len());
                plan.built_idx.push(plan.next_expected);
                plan.next_expected += 1;
            }
        }
        plan.next_expected = raw.idx.saturating_add(1);
        if self.shape.skip_empty_rows && !raw.has_value {
            return;
        }
        let mut cells = raw.cells;
        if !cells.is_sorted_by_key(|c| c.0) {
            cells.sort_by_key(|c| c.0);
        }
        build_row(&mut plan.built, plan.columns.len(), plan.left, cells);
        plan.built_idx.push(raw.idx);
    }

    /// Leaves the fast path: built rows become raw rows again.
    fn abandon_plan(&mut self) {
        let Some(plan) = self.plan.take() else {
            return;
        };
        self.warnings.listed.truncate(plan.warnings_before.0);
        self.warnings.total = plan.warnings_before.1;
        let mut rows = Vec::with_capacity(plan.built_idx.len() + 1 + self.rows.len());
        rows.push(RawRow {
            idx: plan.header_idx,
            cells: plan.header_cells,
            has_value: true,
        });
        let width = plan.columns.len().max(1);
        let mut built = plan.built.into_iter();
        for idx in plan.built_idx {
            let cells: Vec<(u32, Value)> = built
                .by_ref()
                .take(width)
                .enumerate()
                .filter(|(_, v)| !v.is_none())
                .map(|(i, v)| (plan.left + i as u32, v))
                .collect();
            // Gap rows (all null) are regenerated by `finish`.
            if !cells.is_empty() {
                rows.push(RawRow {
                    idx,
                    cells,
                    has_value: true,
                });
            }
        }
        rows.append(&mut self.rows);
        self.rows = rows;
    }

    /// The first data row (after the header), once the first row is known.
    fn data_start(&self) -> u32 {
        let first = self.first_idx.unwrap_or(0);
        let header_idx = self.shape.header_row.unwrap_or(first);
        if self.shape.header {
            header_idx.saturating_add(1)
        } else {
            header_idx
        }
    }

    /// Whether the rows before `next_row` already give `max_rows` data rows.
    fn enough_rows(&self, next_row: u32) -> bool {
        let Some(max) = self.shape.max_rows else {
            return false;
        };
        if self.first_idx.is_none() {
            return false;
        }
        let done = if self.shape.skip_empty_rows {
            self.completed
        } else {
            next_row.saturating_sub(self.data_start()) as usize
        };
        done >= max
    }

    pub fn finish(mut self) -> Result<Table, ShapeError> {
        if self.plan.is_some() {
            self.materialize();
        }
        if let Some(plan) = self.plan.take() {
            let mut cells = plan.built;
            let mut truncated = self.truncated;
            let width = plan.columns.len();
            if let Some(max) = self.shape.max_rows
                && cells.len() > max.saturating_mul(width)
            {
                cells.truncate(max.saturating_mul(width));
                truncated = true;
            }
            return Ok(Table {
                rows: Grid::new(&plan.columns, true, cells),
                columns: plan.columns,
                warnings: self.warnings,
                truncated,
            });
        }
        let mut warnings = std::mem::take(&mut self.warnings);
        let (Some(kept), false) = (self.kept_box, self.rows.is_empty()) else {
            if let (Some(range), Some(data)) = (self.shape.range, self.sheet_box) {
                return Err(ShapeError::RangeOutside { range, data });
            }
            return Ok(Table {
                rows: Grid::default(),
                columns: Vec::new(),
                warnings,
                truncated: false,
            });
        };
        // Columns: the range's (clipped to the sheet's data), else the data's.
        let (left, right) = match (self.shape.range, self.sheet_box) {
            (Some(r), Some(s)) => (r.left.max(s.left), r.right.min(s.right)),
            _ => (kept.left, kept.right),
        };
        let width = (right - left + 1) as usize;
        for row in &mut self.rows {
            if !row.cells.is_sorted_by_key(|c| c.0) {
                row.cells.sort_by_key(|c| c.0);
            }
        }
        let first_idx = self.rows[0].idx;
        let header_idx = self.shape.header_row.unwrap_or(first_idx);
        let mut rows_iter = self.rows.into_iter().peekable();

        let columns: Vec<String>;
        let data_start;
        if self.shape.header {
            let header_cells = match rows_iter.peek() {
                Some(r) if r.idx == header_idx => rows_iter.next().map(|r| r.cells),
                _ => None,
            }
            .unwrap_or_default();
            columns = name_columns(header_idx, left, width, header_cells, &mut warnings);
            data_start = header_idx.saturating_add(1);
        } else {
            columns = (left..=right).map(col_name).collect();
            data_start = header_idx;
        }

        let mut out: Vec<Value> = Vec::new();
        let mut count = 0usize;
        let mut next_expected = data_start;
        let max = self.shape.max_rows.unwrap_or(usize::MAX);
        let mut truncated = self.truncated;
        for raw in rows_iter {
            if raw.idx < data_start {
                continue;
            }
            if !self.shape.skip_empty_rows {
                while next_expected < raw.idx && count < max {
                    empty_row(&mut out, columns.len());
                    count += 1;
                    next_expected += 1;
                }
            }
            next_expected = raw.idx.saturating_add(1);
            if count >= max {
                truncated = true;
                break;
            }
            if self.shape.skip_empty_rows && !raw.has_value {
                continue;
            }
            build_row(&mut out, columns.len(), left, raw.cells);
            count += 1;
        }
        Ok(Table {
            rows: Grid::new(&columns, self.shape.header, out),
            columns,
            warnings,
            truncated,
        })
    }
}

/// The fast path needs header-keyed rows and columns fixed by the header
/// row; a `range` clips columns to the sheet's data, known only at the end.
fn shape_rules_out_plan(shape: &Shape) -> bool {
    !shape.header || shape.range.is_some()
}

/// A row of nulls (a kept empty row).
fn empty_row(out: &mut Vec<Value>, width: usize) {
    out.extend(std::iter::repeat_n(null(), width));
}

impl RawRow {
    fn new(idx: u32) -> RawRow {
        RawRow {
            idx,
            cells: Vec::new(),
            has_value: false,
        }
    }
}

/// One result row, appended to the grid's cells: the values move out of the
/// raw row (no copy); missing cells are null so that every row has every
/// column.
fn build_row(out: &mut Vec<Value>, width: usize, left: u32, cells: Vec<(u32, Value)>) {
    let mut cells = cells.into_iter().peekable();
    for i in 0..width {
        let col = left + i as u32;
        while cells.peek().is_some_and(|c| c.0 < col) {
            cells.next();
        }
        let v = match cells.peek() {
            Some(c) if c.0 == col => cells.next().map(|c| c.1).unwrap_or_else(null),
            _ => null(),
        };
        out.push(v);
    }
}

/// Header names: blank cells get `column_<letter>`, duplicates `_2`, `_3`;
/// each fix is a warning naming the cell.
fn name_columns(
    header_idx: u32,
    left: u32,
    width: usize,
    cells: Vec<(u32, Value)>,
    warnings: &mut Warnings,
) -> Vec<String> {
    let mut raw: Vec<Option<String>> = vec![None; width];
    for (col, v) in cells {
        let Some(slot) = col.checked_sub(left).and_then(|i| raw.get_mut(i as usize)) else {
            continue;
        };
        if v.is_none() {
            continue;
        }
        let text = match v.as_str() {
            Some(s) => s.trim().to_string(),
            None => v.to_string(),
        };
        if !text.is_empty() {
            *slot = Some(text);
        }
    }
    let mut names: Vec<String> = Vec::with_capacity(width);
    let mut seen = std::collections::HashSet::new();
    for (i, name) in raw.into_iter().enumerate() {
        let col = left + i as u32;
        let cell = address(header_idx, col);
        let base = match name {
            Some(n) => n,
            None => {
                let n = format!("column_{}", col_name(col));
                warnings.push(|| format!("{cell}: blank header, column named `{n}`"));
                n
            }
        };
        let mut name = base.clone();
        let mut k = 2;
        while seen.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        if name != base {
            warnings.push(|| format!("{cell}: duplicate header `{base}` renamed `{name}`"));
        }
        seen.insert(name.clone());
        names.push(name);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn json_rows(t: &Table) -> Vec<serde_json::Value> {
        t.rows.to_json()
    }

    fn shape() -> Shape {
        Shape {
            header: true,
            skip_empty_rows: true,
            ..Shape::default()
        }
    }

    fn feed(b: &mut Builder, cells: &[(u32, u32, serde_json::Value)]) {
        for (r, c, v) in cells {
            let _ = b.push(*r, *c, Cell::Value(crate::template::to_value(v)));
        }
    }

    #[test]
    fn headers_are_fixed_and_rows_keyed() {
        let mut b = Builder::new(shape());
        feed(
            &mut b,
            &[
                (0, 0, json!("name")),
                (0, 2, json!("name")),
                (1, 0, json!("a")),
                (1, 1, json!(1)),
                (3, 2, json!(true)),
            ],
        );
        let t = b.finish().unwrap();
        assert_eq!(t.columns, ["name", "column_B", "name_2"]);
        assert_eq!(
            json_rows(&t),
            vec![
                json!({"name": "a", "column_B": 1, "name_2": null}),
                json!({"name": null, "column_B": null, "name_2": true})
            ]
        );
        assert_eq!(t.warnings.total, 2);
    }

    #[test]
    fn leaving_the_fast_path_gives_the_general_result() {
        // A later row wider than the header, then a row out of order.
        let mut b = Builder::new(shape());
        feed(
            &mut b,
            &[
                (0, 0, json!("k")),
                (0, 1, json!("")),
                (0, 1, json!("v")),
                (1, 0, json!("a")),
                (1, 1, json!(1)),
                (2, 0, json!("b")),
                (4, 0, json!("d")),
                (4, 3, json!(true)),
                (3, 0, json!("c")),
            ],
        );
        let t = b.finish().unwrap();
        assert_eq!(t.columns, ["k", "v", "column_C", "column_D"]);
        assert_eq!(
            json_rows(&t),
            vec![
                json!({"k": "a", "v": 1, "column_C": null, "column_D": null}),
                json!({"k": "b", "v": null, "column_C": null, "column_D": null}),
                json!({"k": "c", "v": null, "column_C": null, "column_D": null}),
                json!({"k": "d", "v": null, "column_C": null, "column_D": true}),
            ]
        );
        assert_eq!(t.warnings.total, 2, "{:?}", t.warnings.listed);

        // The fast path itself, with empty rows kept.
        let mut b = Builder::new(Shape {
            skip_empty_rows: false,
            ..shape()
        });
        feed(
            &mut b,
            &[
                (0, 0, json!("k")),
                (2, 0, json!(1)),
                (3, 0, json!(2)),
                (5, 0, json!(3)),
            ],
        );
        let t = b.finish().unwrap();
        assert_eq!(
            json_rows(&t),
            vec![
                json!({"k": null}),
                json!({"k": 1}),
                json!({"k": 2}),
                json!({"k": null}),
                json!({"k": 3})
            ]
        );
    }

    #[test]
    fn max_rows_stops_the_stream() {
        let mut b = Builder::new(Shape {
            max_rows: Some(2),
            ..shape()
        });
        let mut stopped_at = None;
        for r in 0..100u32 {
            if b.push(r, 0, Cell::Value(Value::from(r))).is_break() {
                stopped_at = Some(r);
                break;
            }
        }
        assert_eq!(stopped_at, Some(3));
        let t = b.finish().unwrap();
        assert_eq!(t.rows.len(), 2);
        assert!(t.truncated);
    }

    #[test]
    fn empty_rows_kept_on_request_and_range_outside_is_an_error() {
        let mut b = Builder::new(Shape {
            skip_empty_rows: false,
            ..shape()
        });
        feed(&mut b, &[(0, 0, json!("k")), (3, 0, json!(1))]);
        let t = b.finish().unwrap();
        assert_eq!(
            json_rows(&t),
            vec![json!({"k": null}), json!({"k": null}), json!({"k": 1})]
        );

        let mut b = Builder::new(Shape {
            range: Rect::parse("D10:E20"),
            ..shape()
        });
        feed(&mut b, &[(0, 0, json!("k"))]);
        assert!(matches!(b.finish(), Err(ShapeError::RangeOutside { .. })));
    }
}
