//! Bounded run state (issue 13 §3) through the real `clerk` binary, a real
//! SQLite file and real xlsx files written with rust_xlsxwriter: a big
//! `sheet.read` leaves a small `runs` row (the rows are kept as an
//! omitted-value marker: size, SHA-256, step, action), a resume after a big
//! read works (the read runs again; a `once` read is re-derived; a big `once`
//! value that cannot be re-derived fails clearly), and templates over the
//! compact rows behave as they did over JSON maps.

mod common;

use std::path::Path;

use common::{Backend, Workspace, query};
use serde_json::{Value, json};

/// An export of `rows` data rows × 10 columns, like a real one.
fn write_sheet(path: &Path, rows: u32) {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name("Data").unwrap();
    let headers = [
        "id", "name", "amount", "active", "postcode", "city", "qty", "rate", "note", "code",
    ];
    for (c, h) in headers.iter().enumerate() {
        ws.write_string(0, c as u16, *h).unwrap();
    }
    let cities = ["Brussels", "Antwerp", "Ghent", "Liège"];
    for i in 0..rows {
        let r = i + 1;
        ws.write_number(r, 0, f64::from(i + 1)).unwrap();
        ws.write_string(r, 1, format!("Applicant {}", i + 1))
            .unwrap();
        ws.write_number(r, 2, f64::from(i % 1000) * 1.25).unwrap();
        ws.write_boolean(r, 3, i % 3 == 0).unwrap();
        ws.write_string(r, 4, format!("{}", 1000 + (i % 9) * 10))
            .unwrap();
        ws.write_string(r, 5, cities[(i % 4) as usize]).unwrap();
        ws.write_number(r, 6, f64::from(i % 17)).unwrap();
        ws.write_number(r, 7, 0.01 * f64::from(i % 100)).unwrap();
        if i % 4 != 0 {
            ws.write_string(r, 8, format!("note {}", i % 250)).unwrap();
        }
        ws.write_string(r, 9, format!("C-{:06}", i * 7)).unwrap();
    }
    wb.save(path).unwrap();
}

fn run_json(ws: &Workspace, args: &[&str]) -> Value {
    let r = ws.clerk(args);
    serde_json::from_str(&r.stdout())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", r.stdout(), r.stderr()))
}

fn events(ws: &Workspace, id: &str) -> Vec<Value> {
    let show = ws.clerk(&["runs", "show", id, "--json"]).ok().json();
    show["events"].as_array().unwrap().clone()
}

fn row_bytes(ws: &Workspace, id: &str) -> (usize, usize) {
    let vars: usize = query(
        ws,
        &format!("SELECT length(CAST(vars AS BLOB)) FROM runs WHERE id = '{id}'"),
    )[0]
    .parse()
    .unwrap();
    // Every column of the row, as SQL text literals: an upper bound.
    let cols = query(ws, "SELECT name FROM pragma_table_info('runs')");
    let sum = cols
        .iter()
        .map(|c| format!("length(CAST(quote(\"{c}\") AS BLOB))"))
        .collect::<Vec<_>>()
        .join(" + ");
    let row: usize = query(ws, &format!("SELECT {sum} FROM runs WHERE id = '{id}'"))[0]
        .parse()
        .unwrap();
    (vars, row)
}

fn assert_marker(v: &Value, step: &str, action: &str) {
    assert_eq!(v["omitted"], true, "{v}");
    assert!(v["bytes"].as_u64().unwrap() > 16 * 1024, "{v}");
    let sha = v["sha256"].as_str().unwrap();
    assert!(
        sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
        "{v}"
    );
    assert_eq!(v["step"], step, "{v}");
    assert_eq!(v["action"], action, "{v}");
}

#[test]
fn a_big_read_leaves_a_small_runs_row() {
    let ws = Workspace::new(Backend::Sqlite);
    write_sheet(&ws.path().join("big.xlsx"), 20_000);
    ws.write(
        "read.yaml",
        "name: big read\nsteps:\n  - sheet.read: big.xlsx\n    save_as: data\n  - set:\n      first: \"{{ data.rows[0].name }}\"\n      last_code: \"{{ data.rows[data.count - 1]['code'] }}\"\n      count: \"{{ data.count }}\"\n",
    );
    let v = run_json(&ws, &["run", "read.yaml", "--json"]);
    assert_eq!(v["status"], "succeeded", "{v}");
    // Small values are kept as they are; the rows are a marker.
    assert_eq!(v["vars"]["first"], "Applicant 1");
    assert_eq!(v["vars"]["last_code"], "C-139993");
    assert_eq!(v["vars"]["count"], 20_000);
    assert_marker(&v["vars"]["data"], "1.sheet-read", "sheet.read");
    // Before issue 13 the row held every cell: about 4 MB for this file.
    let id = v["id"].as_str().unwrap();
    let (vars, row) = row_bytes(&ws, id);
    assert!(vars < 16 * 1024, "runs.vars is {vars} bytes");
    assert!(row < 64 * 1024, "the runs row is {row} bytes");
    // The stored marker is the one `--json` printed.
    let stored: Value =
        serde_json::from_str(&query(&ws, &format!("SELECT vars FROM runs WHERE id = '{id}'"))[0])
            .unwrap();
    assert_eq!(stored["data"], v["vars"]["data"]);
}

#[test]
fn the_marker_hashes_the_value_and_changes_with_the_data() {
    let ws = Workspace::new(Backend::Sqlite);
    write_sheet(&ws.path().join("big.xlsx"), 2_000);
    ws.write(
        "read.yaml",
        "name: read\nsteps:\n  - id: load\n    sheet.read: big.xlsx\n    save_as: data\n",
    );
    let a = run_json(&ws, &["run", "read.yaml", "--json"]);
    let b = run_json(&ws, &["run", "read.yaml", "--json"]);
    assert_marker(&a["vars"]["data"], "load", "sheet.read");
    assert_eq!(
        a["vars"]["data"], b["vars"]["data"],
        "same file, same marker"
    );
    write_sheet(&ws.path().join("big.xlsx"), 2_001);
    let c = run_json(&ws, &["run", "read.yaml", "--json"]);
    assert_ne!(c["vars"]["data"]["sha256"], a["vars"]["data"]["sha256"]);
    assert!(c["vars"]["data"]["bytes"].as_u64() > a["vars"]["data"]["bytes"].as_u64());
}

const RESUMABLE: &str = r#"name: big read then items
steps:
  - id: load
    sheet.read: big.xlsx
    save_as: data
  - id: enter
    for_each: "{{ data.rows[:3] }}"
    as: row
    checkpoint: "{{ row.id }}"
    steps:
      - file.read: "need-{{ row.id }}.txt"
      - sheet.append: { path: out/entered.csv, rows: [{ id: "{{ row.id }}", name: "{{ row.name }}" }] }
    output: "{{ row.id }}-{{ row.code }}"
    save_as: results
  - file.write: { path: out/results.txt, text: "{{ results | join(',') }}" }
"#;

#[test]
fn a_resume_after_a_big_read_reads_again_and_skips_done_items() {
    let ws = Workspace::new(Backend::Sqlite);
    write_sheet(&ws.path().join("big.xlsx"), 2_000);
    ws.write("items.yaml", RESUMABLE);
    ws.write("need-1.txt", "ok");
    ws.write("need-3.txt", "ok");
    let first = run_json(&ws, &["run", "items.yaml", "--json"]);
    assert_eq!(first["status"], "failed", "{first}");
    assert!(
        first["error"]["message"]
            .as_str()
            .unwrap()
            .contains("need-2.txt"),
        "{first}"
    );
    assert_marker(&first["vars"]["data"], "load", "sheet.read");
    let id = first["id"].as_str().unwrap();
    assert!(row_bytes(&ws, id).1 < 64 * 1024);

    ws.write("need-2.txt", "ok");
    let again = run_json(&ws, &["runs", "resume", id, "--json"]);
    assert_eq!(again["status"], "succeeded", "{again}");
    assert_eq!(again["items"]["skipped"], 1, "{again}");
    assert_eq!(again["items"]["done"], 2, "{again}");
    assert_eq!(
        again["vars"]["results"],
        json!(["1-C-000000", "2-C-000007", "3-C-000014"])
    );
    assert_eq!(
        ws.read("out/entered.csv"),
        "id,name\n1,Applicant 1\n2,Applicant 2\n3,Applicant 3\n"
    );
    // The resumed run read the sheet again (it is not `once`).
    let evs = events(&ws, again["id"].as_str().unwrap());
    assert!(
        evs.iter()
            .any(|e| e["action"] == "sheet.read" && e["outcome"] == "ok"),
        "no read in the resumed run"
    );
}

#[test]
fn a_big_once_read_is_rederived_on_resume_and_a_big_once_value_fails_clearly() {
    let ws = Workspace::new(Backend::Sqlite);
    write_sheet(&ws.path().join("big.xlsx"), 2_000);
    let once_read = RESUMABLE.replace(
        "  - id: load\n    sheet.read",
        "  - id: load\n    once: true\n    sheet.read",
    );
    ws.write("items.yaml", &once_read);
    ws.write("need-1.txt", "ok");
    let first = run_json(&ws, &["run", "items.yaml", "--json"]);
    assert_eq!(first["status"], "failed", "{first}");
    // The ledger keeps the marker, not the rows.
    let stored = query(
        &ws,
        "SELECT length(CAST(output AS BLOB)) FROM work_items WHERE item_key = ''",
    );
    assert!(stored[0].parse::<usize>().unwrap() < 1024, "{stored:?}");

    ws.write("need-2.txt", "ok");
    ws.write("need-3.txt", "ok");
    let id = first["id"].as_str().unwrap();
    let again = run_json(&ws, &["runs", "resume", id, "--json"]);
    assert_eq!(again["status"], "succeeded", "{again}");
    assert_eq!(
        again["vars"]["results"],
        json!(["1-C-000000", "2-C-000007", "3-C-000014"])
    );
    let evs = events(&ws, again["id"].as_str().unwrap());
    let re = evs
        .iter()
        .find(|e| e["kind"] == "step.rederived")
        .unwrap_or_else(|| panic!("no step.rederived in {evs:#?}"));
    assert_eq!(re["detail"]["same"], true, "{re}");
    assert_eq!(re["detail"]["by_run"], id);
    assert_eq!(
        re["detail"]["kept_sha256"], first["vars"]["data"]["sha256"],
        "{re}"
    );

    // A big `once` value that is not a read cannot be re-derived: the
    // resume fails at that step and says why.
    let ws = Workspace::new(Backend::Sqlite);
    write_sheet(&ws.path().join("big.xlsx"), 2_000);
    ws.write(
        "copy.yaml",
        r#"name: big once value
steps:
  - sheet.read: big.xlsx
    save_as: data
  - id: copy
    once: true
    set: { copy: "{{ data.rows }}" }
    save_as: copied
  - file.read: go.txt
"#,
    );
    let first = run_json(&ws, &["run", "copy.yaml", "--json"]);
    assert_eq!(first["status"], "failed", "{first}");
    ws.write("go.txt", "go");
    let id = first["id"].as_str().unwrap();
    let again = run_json(&ws, &["runs", "resume", id, "--json"]);
    assert_eq!(again["status"], "failed", "{again}");
    let msg = again["error"]["message"].as_str().unwrap();
    assert!(msg.contains("cannot be restored"), "{msg}");
    assert!(msg.contains("`output:`"), "{msg}");
    assert_eq!(again["error"]["action"], "set", "{again}");
}

#[test]
fn templates_over_compact_rows_behave_like_json_maps() {
    let ws = Workspace::new(Backend::Sqlite);
    write_sheet(&ws.path().join("small.xlsx"), 3);
    ws.write(
        "t.yaml",
        r#"name: templates
steps:
  - sheet.read: small.xlsx
    save_as: data
  - set:
      dot: "{{ data.rows[0].name }}"
      bracket: "{{ data.rows[1]['city'] }}"
      keys: "{% for k in data.rows[0] %}{{ k }} {% endfor %}"
      pairs: "{% for k, v in data.rows[2] | items %}{{ k }}={{ v }};{% endfor %}"
      as_json: "{{ data.rows[0] | tojson }}"
      ids: "{{ data.rows | map(attribute='id') | list }}"
      total: "{{ data.rows | map(attribute='amount') | sum }}"
      count: "{{ data.rows | length }}"
      none_note: "{{ data.rows[0].note is none }}"
  - for_each: "{{ data.rows }}"
    as: row
    if: "{{ row.active }}"
    output: { id: "{{ row.id }}", row: "{{ row }}" }
    steps:
      - log: "{{ row.name }} in {{ row.city }}"
    save_as: active
  - sheet.write: { path: out/copy.csv, rows: "{{ data.rows }}" }
"#,
    );
    let v = run_json(&ws, &["run", "t.yaml", "--json"]);
    assert_eq!(v["status"], "succeeded", "{v}");
    let vars = &v["vars"];
    assert_eq!(vars["dot"], "Applicant 1");
    assert_eq!(vars["bracket"], "Antwerp");
    assert_eq!(
        vars["keys"],
        "id name amount active postcode city qty rate note code "
    );
    assert_eq!(
        vars["pairs"],
        "id=3;name=Applicant 3;amount=2.5;active=False;postcode=1020;city=Ghent;qty=2;rate=0.02;note=note 2;code=C-000014;"
    );
    assert_eq!(
        serde_json::from_str::<Value>(vars["as_json"].as_str().unwrap()).unwrap(),
        json!({"id": 1, "name": "Applicant 1", "amount": 0, "active": true, "postcode": "1000",
               "city": "Brussels", "qty": 0, "rate": 0, "note": null, "code": "C-000000"})
    );
    assert_eq!(vars["ids"], json!([1, 2, 3]));
    assert_eq!(vars["total"], 3.75);
    assert_eq!(vars["count"], 3);
    assert_eq!(vars["none_note"], true);
    // Loop items are the rows themselves; `output` keeps a row as a map.
    assert_eq!(vars["active"].as_array().unwrap().len(), 1);
    assert_eq!(vars["active"][0]["id"], 1);
    assert_eq!(vars["active"][0]["row"]["city"], "Brussels");
    // The whole result is small here, so it is kept as it is.
    assert_eq!(vars["data"]["count"], 3);
    assert_eq!(vars["data"]["rows"][1]["name"], "Applicant 2");
    assert_eq!(
        vars["data"]["columns"],
        json!([
            "id", "name", "amount", "active", "postcode", "city", "qty", "rate", "note", "code"
        ])
    );
    let csv = ws.read("out/copy.csv");
    assert!(
        csv.starts_with("id,name,amount,active,postcode,city,qty,rate,note,code\n1,Applicant 1,0,true,1000,Brussels,0,0,,C-000000\n"),
        "{csv}"
    );
}
