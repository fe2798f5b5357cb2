//! Rows of a sheet held compactly: one flat vector of template values (24
//! bytes a cell, short text inline) and one shared header, instead of a map
//! per row with its own copy of every column name.
//!
//! Templates see the usual shapes — `data.rows` is a list, a row is a map
//! keyed by column (or a list when the read had `header: false`): `row.Col`,
//! `row["Col"]`, `for k, v in row.items()`, `rows | length`, `rows[0]`,
//! `rows | tojson` all behave as they did with JSON maps. A row object is
//! made on access (an `Arc` clone and an index), so a 100,000-row read costs
//! its cells and nothing per row.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectExt, ObjectRepr, Value as MValue};

/// The cells of a read, row after row, `width` values per row.
#[derive(Default)]
pub struct Grid {
    /// Column names, as template strings (the keys a row shows).
    keys: Vec<MValue>,
    /// Column name → position.
    index: HashMap<String, usize>,
    /// Rows are maps (a header row named the columns) or lists.
    header: bool,
    width: usize,
    cells: Vec<MValue>,
}

impl fmt::Debug for Grid {
    // Never the cells: a debug print of 1,000,000 values helps no one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} sheet rows x {} columns>", self.len(), self.width)
    }
}

impl Grid {
    /// A grid over `columns` from row-major `cells` (`cells.len()` is a
    /// multiple of the width; a short tail is padded with nulls).
    pub fn new(columns: &[String], header: bool, mut cells: Vec<MValue>) -> Grid {
        let width = columns.len();
        if width == 0 {
            cells.clear();
        } else if !cells.len().is_multiple_of(width) {
            let padded = cells.len().div_ceil(width) * width;
            cells.resize(padded, MValue::from(()));
        }
        cells.shrink_to_fit();
        Grid {
            keys: columns.iter().map(|c| MValue::from(c.as_str())).collect(),
            index: columns
                .iter()
                .enumerate()
                .map(|(i, c)| (c.clone(), i))
                .collect(),
            header,
            width,
            cells,
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.cells.len().checked_div(self.width).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values of row `i` (column order).
    pub fn row(&self, i: usize) -> Option<&[MValue]> {
        let start = i.checked_mul(self.width)?;
        self.cells.get(start..start.checked_add(self.width)?)
    }

    /// Row `i` as JSON (a map keyed by column, or a list), for tests and
    /// benchmarks; templates use [`Grid::into_value`].
    pub fn row_json(&self, i: usize) -> Option<serde_json::Value> {
        let row = self.row(i)?;
        let json = |v: &MValue| crate::template::to_json(v);
        Some(if self.header {
            serde_json::Value::Object(
                self.keys
                    .iter()
                    .zip(row)
                    .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), json(v)))
                    .collect(),
            )
        } else {
            serde_json::Value::Array(row.iter().map(json).collect())
        })
    }

    /// Every row as JSON (small reads: tests).
    pub fn to_json(&self) -> Vec<serde_json::Value> {
        (0..self.len()).filter_map(|i| self.row_json(i)).collect()
    }

    /// The rows as one template value: a list of row objects.
    pub fn into_value(self) -> MValue {
        MValue::from_object(Rows(Arc::new(self)))
    }
}

/// `data.rows`: a sequence whose items are made on access.
#[derive(Debug)]
struct Rows(Arc<Grid>);

impl Object for Rows {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &MValue) -> Option<MValue> {
        let i = key.as_usize()?;
        (i < self.0.len()).then(|| {
            MValue::from_object(Row {
                grid: self.0.clone(),
                index: i,
            })
        })
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Seq(self.0.len())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.len())
    }
}

/// One row: a view (grid + index), keyed by the shared column names.
#[derive(Debug)]
struct Row {
    grid: Arc<Grid>,
    index: usize,
}

impl Row {
    fn cells(&self) -> &[MValue] {
        self.grid.row(self.index).unwrap_or(&[])
    }
}

impl Object for Row {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        if self.grid.header {
            ObjectRepr::Map
        } else {
            ObjectRepr::Seq
        }
    }

    fn get_value(self: &Arc<Self>, key: &MValue) -> Option<MValue> {
        let col = if self.grid.header {
            *self.grid.index.get(key.as_str()?)?
        } else {
            key.as_usize()?
        };
        self.cells().get(col).cloned()
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<MValue> {
        if !self.grid.header {
            return None;
        }
        let col = *self.grid.index.get(key)?;
        self.cells().get(col).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        if self.grid.header {
            self.mapped_enumerator(|this| Box::new(this.grid.keys.iter().cloned()))
        } else {
            Enumerator::Seq(self.grid.width)
        }
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.grid.width)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{render, to_json};
    use serde_json::json;

    fn grid() -> MValue {
        let cols = ["id".to_string(), "name".to_string(), "amount".to_string()];
        let cells = vec![
            MValue::from(1),
            MValue::from("Alpha"),
            MValue::from(12.5),
            MValue::from(2),
            MValue::from(()),
            MValue::from(40),
        ];
        Grid::new(&cols, true, cells).into_value()
    }

    fn ctx() -> MValue {
        minijinja::context! { rows => grid() }
    }

    fn text(t: &str) -> String {
        render(t, &ctx()).unwrap().to_string()
    }

    #[test]
    fn rows_behave_like_json_maps_in_templates() {
        assert_eq!(text("{{ rows | length }}"), "2");
        assert_eq!(
            text("{{ rows[0].name }}|{{ rows[0]['amount'] }}"),
            "Alpha|12.5"
        );
        assert_eq!(
            text("{{ rows[1].name is none }}|{{ rows[0].name is none }}"),
            "True|False"
        );
        assert_eq!(
            text("{% for r in rows %}{{ loop.index }}:{{ r.id }};{% endfor %}"),
            "1:1;2:2;"
        );
        assert_eq!(
            text("{% for k, v in rows[0] | items %}{{ k }}={{ v }},{% endfor %}"),
            "id=1,name=Alpha,amount=12.5,"
        );
        assert_eq!(
            text("{% for k in rows[0] %}{{ k }} {% endfor %}"),
            "id name amount "
        );
        assert_eq!(
            text("{{ rows[0] | tojson }}"),
            r#"{"id":1,"name":"Alpha","amount":12.5}"#
        );
        assert_eq!(text("{{ rows | map(attribute='id') | join(',') }}"), "1,2");
        assert_eq!(text("{{ rows | selectattr('name') | list | length }}"), "1");
        assert!(render("{{ rows[0].missing }}", &ctx()).is_err());
        // A whole expression keeps its type and converts to the JSON it was.
        let v = render("{{ rows }}", &ctx()).unwrap();
        assert_eq!(
            to_json(&v),
            json!([
                {"id": 1, "name": "Alpha", "amount": 12.5},
                {"id": 2, "name": null, "amount": 40}
            ])
        );
    }

    #[test]
    fn list_rows_without_header() {
        let cols = ["A".to_string(), "B".to_string()];
        let g = Grid::new(&cols, false, vec![MValue::from("x"), MValue::from(1)]);
        assert_eq!(g.to_json(), vec![json!(["x", 1])]);
        let ctx = minijinja::context! { rows => g.into_value() };
        assert_eq!(render("{{ rows[0][1] }}", &ctx).unwrap().to_string(), "1");
        assert_eq!(
            render("{{ rows[0] | tojson }}", &ctx).unwrap().to_string(),
            r#"["x",1]"#
        );
    }
}
