//! The sheet the sheet benchmarks read: a generated 100,000-row × 10-column
//! export (ints, floats, text, booleans, dates, blanks), fixed data so that
//! every run and every peer reads the same file.

use std::path::Path;

use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};

/// A realistic export: ids, names, amounts, flags, dates, codes, notes.
pub fn generate(path: &Path, rows: usize) {
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name("Data").expect("name");
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let headers = [
        "id", "name", "amount", "active", "start", "postcode", "city", "qty", "rate", "note",
    ];
    for (c, h) in headers.iter().enumerate() {
        ws.write_string(0, c as u16, *h).expect("header");
    }
    let cities = ["Brussels", "Antwerp", "Ghent", "Liège", "Namur", "Leuven"];
    for i in 0..rows {
        let r = (i + 1) as u32;
        let day =
            ExcelDateTime::from_ymd(2026, (i % 12 + 1) as u8, (i % 28 + 1) as u8).expect("date");
        ws.write_number(r, 0, (100_000 + i) as f64).expect("cell");
        ws.write_string(r, 1, format!("Applicant {i}"))
            .expect("cell");
        ws.write_number(r, 2, (i % 1000) as f64 * 1.25)
            .expect("cell");
        ws.write_boolean(r, 3, i % 3 == 0).expect("cell");
        ws.write_datetime_with_format(r, 4, &day, &date)
            .expect("cell");
        ws.write_string(r, 5, format!("{}", 1000 + (i % 9) * 10))
            .expect("cell");
        ws.write_string(r, 6, cities[i % cities.len()])
            .expect("cell");
        ws.write_number(r, 7, (i % 17) as f64).expect("cell");
        ws.write_number(r, 8, 0.01 * (i % 100) as f64)
            .expect("cell");
        if i % 4 != 0 {
            ws.write_string(r, 9, format!("note {}", i % 250))
                .expect("cell");
        }
    }
    wb.save(path).expect("save");
}
