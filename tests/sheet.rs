//! Spreadsheet actions end to end through the real `clerk` binary: every
//! fixture format gives the exact typed values, writes round-trip, appends
//! keep one header, bad and corrupt files give clear errors (never a panic),
//! hostile dimensions read in bounded memory, and the audit records the
//! file's SHA-256, the sheet, the row count and the warnings.

mod common;

use std::path::PathBuf;

use common::{Backend, Run, Workspace};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn fixture(name: &str) -> String {
    format!("{}/fixtures/sheets/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A workspace whose clerk.yaml lets actions read the repository's sheet
/// fixtures in place (they are outside the workspace, behind its boundary).
fn sheet_ws() -> Workspace {
    let ws = Workspace::new(Backend::Sqlite);
    ws.write(
        "clerk.yaml",
        &format!(
            "allowed_roots: [\"{}/fixtures/sheets\"]\n",
            env!("CARGO_MANIFEST_DIR")
        ),
    );
    ws
}

fn expected_sample() -> Vec<Value> {
    let text = std::fs::read_to_string(fixture("sample.expected.json")).unwrap();
    serde_json::from_str::<Vec<Value>>(&text).unwrap()
}

/// Runs a one-step playbook `sheet.read: { <args> }` saved as `data`.
fn read(ws: &Workspace, args: &str) -> Run {
    ws.write(
        "read.yaml",
        &format!("name: read\nsteps:\n  - sheet.read: {{ {args} }}\n    save_as: data\n"),
    );
    ws.clerk(&["run", "read.yaml", "--json"])
}

fn read_ok(ws: &Workspace, args: &str) -> Value {
    let r = read(ws, args).ok();
    let v = r.json();
    assert_eq!(v["status"], "succeeded", "{v}");
    v["vars"]["data"].clone()
}

/// The error message of a failed one-step read, after checking it failed cleanly.
fn read_err(ws: &Workspace, args: &str) -> String {
    let r = read(ws, args);
    assert_eq!(
        r.code(),
        1,
        "expected a failed run for {args}: {}{}",
        r.stdout(),
        r.stderr()
    );
    assert_no_panic(&r);
    let v = r.json();
    assert_eq!(v["status"], "failed");
    let msg = v["error"]["message"].as_str().unwrap().to_string();
    assert!(
        !msg.contains("Error {") && !msg.contains("panicked"),
        "debug text in {msg}"
    );
    msg
}

fn assert_no_panic(r: &Run) {
    let all = format!("{}{}", r.stdout(), r.stderr());
    for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(!all.contains(bad), "`{bad}` in output:\n{all}");
    }
}

/// Compares rows exactly, numbers by value (`40` equals `40.0`: no spreadsheet
/// format can tell them apart, see fixtures/sheets/README.md).
fn assert_rows_eq(got: &Value, want: &[Value], what: &str) {
    let got = got
        .as_array()
        .unwrap_or_else(|| panic!("{what}: rows is not a list: {got}"));
    assert_eq!(got.len(), want.len(), "{what}: row count\n{got:#?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g.as_object().unwrap(), w.as_object().unwrap());
        assert_eq!(
            g.keys().collect::<Vec<_>>(),
            w.keys().collect::<Vec<_>>(),
            "{what}: keys of row {i}"
        );
        for (k, wv) in w {
            let gv = &g[k];
            let same = match (gv.as_f64(), wv.as_f64()) {
                (Some(a), Some(b)) => a == b,
                _ => gv == wv,
            };
            assert!(same, "{what}: row {i} `{k}`: got {gv}, want {wv}");
        }
    }
}

fn events(ws: &Workspace, run: &Value) -> Vec<Value> {
    let id = run["id"].as_str().unwrap();
    let show = ws.clerk(&["runs", "show", id, "--json"]).ok().json();
    show["events"].as_array().unwrap().clone()
}

fn sha256_of(path: &std::path::Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn every_format_returns_the_expected_typed_values() {
    let ws = sheet_ws();
    let want = expected_sample();
    let cases = [
        ("sample.xlsx", "", true),
        ("sample.xlsm", "", true),
        ("sample.xls", "", true),
        ("sample.ods", "", true),
        ("sample.csv", "", false),
        ("sample-win1252.csv", ", encoding: windows-1252", false),
    ];
    for (file, extra, has_error_cell) in cases {
        let path = fixture(file);
        let r = read(&ws, &format!("path: \"{path}\"{extra}")).ok();
        let v = r.json();
        let data = &v["vars"]["data"];
        assert_rows_eq(&data["rows"], &want, file);
        assert_eq!(data["count"], 6, "{file}");
        assert_eq!(
            data["columns"],
            json!(["id", "name", "amount", "active", "start", "updated", "note"]),
            "{file}"
        );
        // Integers stay integers (xlsx stores 1001 as a float).
        assert!(
            data["rows"][0]["id"].is_i64(),
            "{file}: {}",
            data["rows"][0]
        );
        assert!(data["rows"][0]["amount"].is_f64(), "{file}");
        let sheet = if file.ends_with(".csv") {
            file.trim_end_matches(".csv")
        } else {
            "Requests"
        };
        assert_eq!(data["sheet"], sheet, "{file}");

        // The audit: path, SHA-256 of the file, sheet, rows, warnings.
        let evs = events(&ws, &v);
        let ev = evs
            .iter()
            .find(|e| e["action"] == "sheet.read" && e["kind"] == "action")
            .expect("sheet.read event");
        let d = &ev["detail"];
        assert_eq!(
            d["sha256"],
            sha256_of(std::path::Path::new(&path)),
            "{file}"
        );
        assert_eq!(d["rows"], 6, "{file}");
        assert_eq!(d["sheet"], sheet, "{file}");
        assert_eq!(d["path"], path.as_str(), "{file}");
        let warnings = d["warnings"].as_array().unwrap();
        if has_error_cell {
            assert_eq!(warnings.len(), 1, "{file}: {warnings:?}");
            assert_eq!(warnings[0], "G6: error value #N/A read as null", "{file}");
        } else {
            assert!(warnings.is_empty(), "{file}: {warnings:?}");
        }
    }
}

#[test]
fn excel_serial_dates_1900_quirk_and_1904_workbooks() {
    let ws = sheet_ws();
    let d = read_ok(&ws, &format!("path: \"{}\"", fixture("dates-1900.xlsx")));
    let dates: Vec<&str> = d["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["date"].as_str().unwrap())
        .collect();
    assert_eq!(
        dates,
        [
            "1900-01-01",
            "1900-02-28",
            "1900-02-28",
            "1900-03-01",
            "2023-03-15"
        ]
    );
    let serials: Vec<Value> = d["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["serial"].clone())
        .collect();
    assert_eq!(
        serials,
        [json!(1), json!(59), json!(60), json!(61), json!(45000)]
    );

    let d = read_ok(&ws, &format!("path: \"{}\"", fixture("dates-1904.xlsx")));
    assert_eq!(
        d["rows"],
        json!([
            {"label": "launch", "date": "2026-03-01"},
            {"label": "millennium eve", "date": "1999-12-31"}
        ])
    );
}

#[test]
fn awkward_headers_are_named_and_noted_in_the_audit() {
    let ws = sheet_ws();
    let r = read(&ws, &format!("path: \"{}\"", fixture("headers.xlsx"))).ok();
    let v = r.json();
    let d = &v["vars"]["data"];
    assert_eq!(
        d["columns"],
        json!([
            "id", "name", "column_C", "name_2", "Period", "column_F", "name_3"
        ])
    );
    assert_eq!(
        d["rows"][0],
        json!({"id": 1, "name": "Alpha", "column_C": "no header", "name_2": "Alpha Two",
               "Period": "2026-01-01", "column_F": "2026-03-31", "name_3": "Alpha Three"})
    );
    assert_eq!(d["rows"][1]["column_F"], "2026-06-30");
    let evs = events(&ws, &v);
    let ev = evs.iter().find(|e| e["action"] == "sheet.read").unwrap();
    assert_eq!(
        ev["detail"]["warnings"],
        json!([
            "C1: blank header, column named `column_C`",
            "D1: duplicate header `name` renamed `name_2`",
            "F1: blank header, column named `column_F`",
            "G1: duplicate header `name` renamed `name_3`"
        ])
    );
}

#[test]
fn huge_declared_dimension_reads_only_the_cells_it_holds() {
    let ws = sheet_ws();
    // Declares A1:XFD1048576 (17 billion cells); a reader sized by the
    // declaration would need hundreds of GB and this test would die.
    let d = read_ok(
        &ws,
        &format!("path: \"{}\"", fixture("huge-dimension.xlsx")),
    );
    assert_eq!(
        d["rows"],
        json!([{"key": "alpha", "value": 1}, {"key": "beta", "value": 2}])
    );
    assert_eq!(d["columns"], json!(["key", "value"]));
    // A range as large as the declaration is clipped to the data too.
    let d = read_ok(
        &ws,
        &format!(
            "path: \"{}\", range: \"A1:XFD1048576\"",
            fixture("huge-dimension.xlsx")
        ),
    );
    assert_eq!(d["count"], 2);
}

#[test]
fn sheet_range_header_and_row_options() {
    let ws = sheet_ws();
    let x = fixture("sample.xlsx");
    // max_rows stops early.
    let d = read_ok(&ws, &format!("path: \"{x}\", max_rows: 2"));
    assert_eq!(d["count"], 2);
    assert_eq!(d["rows"][1]["id"], 1002);
    // A range: columns B..D of rows 1..4, header from the range's first row.
    let d = read_ok(&ws, &format!("path: \"{x}\", range: \"B1:D4\""));
    assert_eq!(d["columns"], json!(["name", "amount", "active"]));
    assert_eq!(
        d["rows"],
        json!([
            {"name": "Zoë Peeters", "amount": 12.5, "active": true},
            {"name": "Jean-Luc D'Hondt", "amount": 0.25, "active": false},
            {"name": "Ana Müller", "amount": null, "active": true}
        ])
    );
    // Without a header: lists, columns named by letter.
    let d = read_ok(
        &ws,
        &format!("path: \"{x}\", sheet: Summary, header: false"),
    );
    assert_eq!(d["rows"], json!([["total", 6], ["currency", "EUR"]]));
    assert_eq!(d["columns"], json!(["A", "B"]));
    // A sheet by position.
    let d = read_ok(&ws, &format!("path: \"{x}\", sheet: 1, header: false"));
    assert_eq!(d["sheet"], "Summary");
    // Empty rows kept on request: sheet row 5 comes back as nulls.
    let d = read_ok(&ws, &format!("path: \"{x}\", skip_empty_rows: false"));
    assert_eq!(d["count"], 7);
    assert!(
        d["rows"][3]
            .as_object()
            .unwrap()
            .values()
            .all(Value::is_null)
    );
    assert_eq!(d["rows"][4]["id"], 1004);
    // header_row: the second sheet row as header.
    let d = read_ok(&ws, &format!("path: \"{x}\", header_row: 2, max_rows: 1"));
    assert_eq!(d["columns"][0], "1001");
    assert_eq!(d["rows"][0]["1001"], 1002);
    // CSV: explicit delimiter, text kept as text.
    let d = read_ok(
        &ws,
        &format!(
            "path: \"{}\", encoding: latin-1, delimiter: \";\", infer_types: false",
            fixture("sample-win1252.csv")
        ),
    );
    assert_eq!(d["rows"][0]["id"], "1001");
    assert_eq!(d["rows"][0]["name"], "Zoë Peeters");
    assert_eq!(d["rows"][2]["amount"], Value::Null);
}

#[test]
fn bad_input_gives_clear_errors() {
    let ws = sheet_ws();
    let msg = read_err(&ws, "path: nowhere/missing.xlsx");
    assert_eq!(msg, "cannot read nowhere/missing.xlsx: no such file");

    let x = fixture("sample.xlsx");
    let msg = read_err(&ws, &format!("path: \"{x}\", sheet: Requets"));
    assert!(
        msg.contains("sheet `Requets` not found in")
            && msg.contains("sample.xlsx; its sheets are `Requests`, `Summary`"),
        "{msg}"
    );
    let msg = read_err(&ws, &format!("path: \"{x}\", sheet: requests"));
    assert!(msg.contains("(did you mean `Requests`?)"), "{msg}");
    let msg = read_err(&ws, &format!("path: \"{x}\", sheet: 7"));
    assert!(
        msg.contains("sheet index 7 is out of range") && msg.contains("has 2 sheet(s)"),
        "{msg}"
    );

    let msg = read_err(&ws, &format!("path: \"{}\"", fixture("not-a-sheet.xlsx")));
    assert!(
        msg.contains("not-a-sheet.xlsx: it is not a spreadsheet"),
        "{msg}"
    );

    let msg = read_err(&ws, &format!("path: \"{}\"", fixture("protected.xlsx")));
    assert!(
        msg.contains("protected.xlsx is password-protected"),
        "{msg}"
    );

    let msg = read_err(&ws, &format!("path: \"{x}\", range: \"K100:M200\""));
    assert!(
        msg.contains("`range` K100:M200 holds no data in sheet `Requests`")
            && msg.contains("the data spans A1:G8"),
        "{msg}"
    );
    let msg = read_err(&ws, &format!("path: \"{x}\", range: \"A1-G8\""));
    assert!(msg.contains("`range` `A1-G8` is not a cell range"), "{msg}");

    // Legacy bytes read as UTF-8: the error names the line and the fix.
    let msg = read_err(&ws, &format!("path: \"{}\"", fixture("sample-win1252.csv")));
    assert!(
        msg.contains("sample-win1252.csv is not valid UTF-8 (line 2")
            && msg.contains("encoding: windows-1252"),
        "{msg}"
    );
    ws.write("bad-utf8.csv", "a,b\n1,2\n3,\u{e9}\n");
    let mut bytes = std::fs::read(ws.path().join("bad-utf8.csv")).unwrap();
    let n = bytes.len();
    bytes[n - 3] = 0xE9; // a lone latin-1 é on line 3
    bytes[n - 2] = b'x';
    std::fs::write(ws.path().join("bad-utf8.csv"), &bytes).unwrap();
    let msg = read_err(&ws, "path: bad-utf8.csv");
    assert!(
        msg.contains("bad-utf8.csv is not valid UTF-8 (line 3"),
        "{msg}"
    );

    // An empty sheet is not an error.
    let d = read_ok(&ws, &format!("path: \"{}\"", fixture("empty.xlsx")));
    assert_eq!(
        d,
        json!({"rows": [], "columns": [], "count": 0, "sheet": "Empty"})
    );
    ws.write("empty.csv", "");
    let d = read_ok(&ws, "path: empty.csv");
    assert_eq!(d["count"], 0);

    // Validation catches wrong argument types before anything runs.
    ws.write(
        "v.yaml",
        "name: v\nsteps:\n  - sheet.read: { path: a.xlsx, max_rows: many, colour: red }\n",
    );
    let r = ws.clerk(&["validate", "v.yaml"]);
    assert_eq!(r.code(), 2);
    assert!(
        r.stdout().contains("unknown field `colour`"),
        "{}",
        r.stdout()
    );
    assert!(r.stdout().contains("max_rows"), "{}", r.stdout());
}

/// Truncated and byte-flipped copies of every fixture format: each read must
/// end as a clean step failure (or, for a flip in an unused byte, a success),
/// never a panic, an abort or a debug dump.
#[test]
fn corrupt_files_fail_cleanly_never_panic() {
    let ws = sheet_ws();
    let mut must_fail: Vec<String> = Vec::new();
    let mut may_pass: Vec<String> = Vec::new();
    for file in [
        "sample.xlsx",
        "sample.xlsm",
        "sample.xls",
        "sample.ods",
        "headers.xlsx",
        "dates-1904.xlsx",
    ] {
        let bytes = std::fs::read(fixture(file)).unwrap();
        let (stem, ext) = file.rsplit_once('.').unwrap();
        for pct in [1, 10, 35, 50, 75, 90, 99] {
            let name = format!("corrupt/{stem}-trunc{pct}.{ext}");
            let cut = bytes.len() * pct / 100;
            write_bytes(&ws, &name, &bytes[..cut]);
            must_fail.push(name);
        }
        // Heavy damage: every 37th byte flipped.
        let mut heavy = bytes.clone();
        for i in (40..heavy.len()).step_by(37) {
            heavy[i] ^= 0xFF;
        }
        let name = format!("corrupt/{stem}-flipped.{ext}");
        write_bytes(&ws, &name, &heavy);
        must_fail.push(name);
        // Single flips across the file: any outcome but a crash.
        for k in 0..24 {
            let mut one = bytes.clone();
            let i = (bytes.len() * k / 24 + 7) % bytes.len();
            one[i] ^= 0x5A;
            let name = format!("corrupt/{stem}-flip{k}.{ext}");
            write_bytes(&ws, &name, &one);
            may_pass.push(name);
        }
    }
    // CSV: a cut-off CSV is still CSV (it may read), but a byte that is not
    // UTF-8 must fail and name its line.
    let csv = std::fs::read(fixture("sample.csv")).unwrap();
    for pct in [10, 50, 90] {
        let name = format!("corrupt/sample-trunc{pct}.csv");
        write_bytes(&ws, &name, &csv[..csv.len() * pct / 100]);
        may_pass.push(name);
    }
    for k in 0..8 {
        let mut one = csv.clone();
        let i = (csv.len() * k / 8 + 3) % csv.len();
        one[i] = 0xFF;
        let name = format!("corrupt/sample-flip{k}.csv");
        write_bytes(&ws, &name, &one);
        must_fail.push(name);
    }
    // One byte that makes calamine 0.38's xls reader panic ("attempt to
    // subtract with overflow"): the panic guard must turn it into an error.
    let mut poisoned = std::fs::read(fixture("sample.xls")).unwrap();
    assert_eq!(poisoned[3889], 0);
    poisoned[3889] = 118;
    write_bytes(&ws, "corrupt/sample-panics.xls", &poisoned);
    must_fail.push("corrupt/sample-panics.xls".into());
    let all: Vec<&String> = must_fail.iter().chain(&may_pass).collect();
    let mut playbook = String::from("name: corrupt\nsteps:\n");
    for name in &all {
        playbook.push_str(&format!(
            "  - sheet.read: {{ path: \"{name}\" }}\n    on_error: continue\n"
        ));
    }
    ws.write("corrupt.yaml", &playbook);
    let r = ws.clerk(&["run", "corrupt.yaml", "--json"]);
    assert_no_panic(&r);
    assert_eq!(
        r.code(),
        0,
        "the run must survive every corrupt file: {}",
        r.stderr()
    );
    let v = r.json();
    let evs = events(&ws, &v);
    let reads: Vec<&Value> = evs
        .iter()
        .filter(|e| e["action"] == "sheet.read" && e["kind"] == "action")
        .collect();
    assert_eq!(reads.len(), all.len());
    for name in &must_fail {
        let ev = reads.iter().find(|e| e["target"] == name.as_str()).unwrap();
        assert_eq!(ev["outcome"], "failed", "{name} was read without error");
        let err = ev["error"].as_str().unwrap();
        assert!(
            err.contains(name.as_str()),
            "{name}: error does not name the file: {err}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("Error {"),
            "{err}"
        );
    }
    for ev in &reads {
        if ev["outcome"] == "failed" {
            let err = ev["error"].as_str().unwrap();
            let target = ev["target"].as_str().unwrap();
            assert!(err.contains(target), "error does not name {target}: {err}");
        }
    }

    let ev = reads
        .iter()
        .find(|e| e["target"] == "corrupt/sample-panics.xls")
        .unwrap();
    assert_eq!(
        ev["error"],
        "cannot read corrupt/sample-panics.xls: the file is corrupt (the spreadsheet decoder stopped on malformed data)"
    );

    // One corrupt file on its own: exit code 1 and a one-paragraph error.
    let msg = read_err(&ws, "path: corrupt/sample-trunc50.xls");
    assert!(
        msg.starts_with("cannot read corrupt/sample-trunc50.xls: "),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
    let ev = reads
        .iter()
        .find(|e| e["target"] == "corrupt/sample-flip4.csv")
        .unwrap();
    assert!(
        ev["error"]
            .as_str()
            .unwrap()
            .contains("is not valid UTF-8 (line "),
        "{}",
        ev["error"]
    );
    let msg = read_err(&ws, "path: corrupt/sample-panics.xls");
    assert!(msg.contains("the file is corrupt"), "{msg}");
}

fn write_bytes(ws: &Workspace, rel: &str, bytes: &[u8]) -> PathBuf {
    let p = ws.path().join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    p
}

const ROUND_TRIP: &str = r#"name: round-trip
inputs:
  source: { type: path, required: true }
  out: { type: path, required: true }
steps:
  - sheet.read: { path: "{{ inputs.source }}" }
    save_as: original
  - sheet.write: { path: "{{ inputs.out }}", rows: "{{ original.rows }}", sheet: Copy }
    save_as: written
  - sheet.read: { path: "{{ inputs.out }}" }
    save_as: again
"#;

#[test]
fn write_then_read_round_trips_xlsx_and_csv() {
    let ws = sheet_ws();
    ws.write("rt.yaml", ROUND_TRIP);
    let want = expected_sample();
    for out in ["out/copy.xlsx", "out/copy.csv", "out/copy.tsv"] {
        let src = format!("source={}", fixture("sample.xlsx"));
        let r = ws
            .clerk(&[
                "run",
                "rt.yaml",
                "--input",
                &src,
                "--input",
                &format!("out={out}"),
                "--json",
            ])
            .ok();
        let v = r.json();
        let again = &v["vars"]["again"];
        assert_rows_eq(&again["rows"], &want, out);
        assert_eq!(again["columns"], v["vars"]["original"]["columns"], "{out}");
        let written = &v["vars"]["written"];
        assert_eq!(written["rows"], 6);
        let file = ws.path().join(out);
        assert_eq!(written["sha256"], sha256_of(&file), "{out}");
        let evs = events(&ws, &v);
        let ev = evs.iter().find(|e| e["action"] == "sheet.write").unwrap();
        assert_eq!(ev["detail"]["sha256"], sha256_of(&file));
        assert_eq!(ev["detail"]["rows"], 6);
        assert_eq!(ev["detail"]["path"], out);
        // No temp files left next to the output.
        let names: Vec<String> = std::fs::read_dir(ws.path().join("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with(".clerk-tmp")),
            "{names:?}"
        );
    }
    assert_eq!(
        ws.read("out/copy.csv").lines().take(2).collect::<Vec<_>>(),
        [
            "id,name,amount,active,start,updated,note",
            "1001,Zoë Peeters,12.5,true,2026-03-01,2026-03-01T08:30:00,Urgent"
        ]
    );
    assert!(ws.read("out/copy.tsv").starts_with("id\tname\tamount"));
    // The xlsx has real date cells, numbers, a bold frozen header.
    let xlsx = ws.path().join("out/copy.xlsx");
    let sheet_xml = unzip(&xlsx, "xl/worksheets/sheet1.xml");
    assert!(sheet_xml.contains(r#"state="frozen""#), "{sheet_xml}");
    assert!(sheet_xml.contains("<cols>"), "column widths: {sheet_xml}");
    let styles = unzip(&xlsx, "xl/styles.xml");
    assert!(styles.contains("<b/>"), "{styles}");
    assert!(styles.contains("yyyy-mm-dd"), "{styles}");
    use calamine::{Data, Reader, Xlsx, open_workbook};
    let mut wb: Xlsx<_> = open_workbook(&xlsx).unwrap();
    assert_eq!(wb.sheet_names(), ["Copy"]);
    let range = wb.worksheet_range("Copy").unwrap();
    assert!(
        matches!(range.get_value((1, 4)), Some(Data::DateTime(_))),
        "{:?}",
        range.get_value((1, 4))
    );
    assert!(matches!(range.get_value((1, 5)), Some(Data::DateTime(_))));
    assert_eq!(range.get_value((1, 0)), Some(&Data::Float(1001.0)));
    assert_eq!(range.get_value((1, 3)), Some(&Data::Bool(true)));
}

fn unzip(file: &std::path::Path, member: &str) -> String {
    let out = std::process::Command::new("unzip")
        .arg("-p")
        .arg(file)
        .arg(member)
        .output()
        .expect("unzip must be installed");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn write_options_and_failures_leave_old_files_alone() {
    let ws = sheet_ws();
    ws.write(
        "w.yaml",
        r#"name: w
steps:
  - sheet.write:
      path: out/pick.csv
      rows: [{ id: 1, name: "Ana", secret: x }, { name: "Bo", id: 2 }]
      columns: [{ key: name, label: Name }, id]
  - sheet.write:
      path: out/lists.csv
      rows: [[1, "a"], [2, null]]
      columns: [n, letter]
      delimiter: ";"
"#,
    );
    ws.clerk(&["run", "w.yaml"]).ok();
    assert_eq!(ws.read("out/pick.csv"), "Name,id\nAna,1\nBo,2\n");
    assert_eq!(ws.read("out/lists.csv"), "n;letter\n1;a\n2;\n");

    // A failing write keeps the old file and leaves no temp file.
    ws.write("out/keep.xlsx", "old content");
    for (args, expect) in [
        (
            "rows: \"not rows\"",
            "`rows` must be a list of maps or a list of lists",
        ),
        ("rows: [1, 2]", "`rows` item 1 is a number"),
        (
            "rows: [{ a: 1 }], sheet: \"bad/name\"",
            "invalid sheet name `bad/name`",
        ),
    ] {
        ws.write(
            "f.yaml",
            &format!("name: f\nsteps:\n  - sheet.write: {{ path: out/keep.xlsx, {args} }}\n"),
        );
        let r = ws.clerk(&["run", "f.yaml", "--json"]);
        assert_eq!(r.code(), 1, "{args}");
        assert_no_panic(&r);
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(
            msg.contains(expect) && msg.contains("out/keep.xlsx"),
            "{args}: {msg}"
        );
        assert_eq!(ws.read("out/keep.xlsx"), "old content");
    }
    let names: Vec<_> = std::fs::read_dir(ws.path().join("out")).unwrap().collect();
    assert_eq!(names.len(), 3, "temp file left behind");

    ws.write(
        "g.yaml",
        "name: g\nsteps:\n  - sheet.write: { path: out/r.xls, rows: [] }\n",
    );
    let r = ws.clerk(&["run", "g.yaml", "--json"]);
    assert_eq!(r.code(), 1);
    assert!(
        r.stdout()
            .contains("the extension must be .xlsx, .csv or .tsv"),
        "{}",
        r.stdout()
    );
}

#[test]
fn append_writes_the_header_once() {
    let ws = sheet_ws();
    ws.write(
        "a.yaml",
        r#"name: a
inputs:
  batch: { type: string, required: true }
steps:
  - sheet.append:
      path: out/log.csv
      rows: [{ id: "{{ inputs.batch }}-1", status: done }, { status: "failed, retry", id: "{{ inputs.batch }}-2" }]
    save_as: appended
"#,
    );
    ws.clerk(&["run", "a.yaml", "--input", "batch=A"]).ok();
    let v = ws
        .clerk(&["run", "a.yaml", "--input", "batch=B", "--json"])
        .ok()
        .json();
    assert_eq!(v["vars"]["appended"]["rows"], 2);
    assert_eq!(
        ws.read("out/log.csv"),
        "id,status\nA-1,done\nA-2,\"failed, retry\"\nB-1,done\nB-2,\"failed, retry\"\n"
    );
    let evs = events(&ws, &v);
    let ev = evs.iter().find(|e| e["action"] == "sheet.append").unwrap();
    assert_eq!(ev["detail"]["created"], false);
    assert_eq!(
        ev["detail"]["sha256"],
        sha256_of(&ws.path().join("out/log.csv"))
    );

    // The existing header decides the order; a key it lacks is an error.
    ws.write("out/semi.csv", "status;id\r\nold;0");
    ws.write(
        "b.yaml",
        "name: b\nsteps:\n  - sheet.append: { path: out/semi.csv, rows: [{ id: 1, status: new }] }\n",
    );
    ws.clerk(&["run", "b.yaml"]).ok();
    assert_eq!(ws.read("out/semi.csv"), "status;id\r\nold;0\r\nnew;1\r\n");
    ws.write(
        "c.yaml",
        "name: c\nsteps:\n  - sheet.append: { path: out/semi.csv, rows: [{ id: 2, colour: red }] }\n",
    );
    let r = ws.clerk(&["run", "c.yaml", "--json"]);
    assert_eq!(r.code(), 1);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("key `colour` is not one of the file's columns (status, id)"),
        "{msg}"
    );
    assert_eq!(ws.read("out/semi.csv"), "status;id\r\nold;0\r\nnew;1\r\n");
    ws.write(
        "d.yaml",
        "name: d\nsteps:\n  - sheet.append: { path: out/x.xlsx, rows: [] }\n",
    );
    let r = ws.clerk(&["run", "d.yaml", "--json"]);
    assert_eq!(r.code(), 1);
    assert!(
        r.stdout().contains("adds rows to CSV files only"),
        "{}",
        r.stdout()
    );
}

#[test]
fn the_example_playbook_validates_and_runs() {
    let ws = sheet_ws();
    let pb = format!("{}/playbooks/sheet-report.yaml", env!("CARGO_MANIFEST_DIR"));
    ws.clerk(&["validate", &pb]).ok();
    let src = format!("source={}", fixture("permit-requests.xlsx"));
    let v = ws
        .clerk(&[
            "run",
            &pb,
            "--input",
            &src,
            "--input",
            "out=out/residents.xlsx",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(v["status"], "succeeded", "{v}");
    let d = read_ok(&ws, "path: out/residents.xlsx, sheet: Permits");
    let rows = d["rows"].as_array().unwrap();
    assert!(!rows.is_empty());
    assert_eq!(
        d["columns"],
        json!(["Request", "Applicant", "Postcode", "Start"])
    );
    let all = read_ok(
        &ws,
        &format!("path: \"{}\"", fixture("permit-requests.xlsx")),
    );
    let residents = all["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["permit_type"] == "Resident")
        .count();
    assert_eq!(rows.len(), residents);
    assert!(
        rows.iter()
            .all(|r| r["Request"].as_str().unwrap().starts_with("PR-2026-"))
    );
}
