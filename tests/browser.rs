//! End-to-end tests of the `browser.*` actions: real `clerk` runs driving real
//! headless Chromium (through chromedriver, started by clerk) against the real
//! `fixtures/legacy-portal` app on a free loopback port.
//!
//! Each test starts its own portal (with the flags it needs) and gives clerk a
//! private TMPDIR, so the processes a run starts can be told apart from those
//! of tests running beside it (no-orphan checks).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::portal::Portal;
use common::{Backend, Run, Workspace, dump_store};
use serde_json::{Value, json};

// ------------------------------------------------------------------ helpers

/// A workspace whose clerk runs get a private TMPDIR (so their browser
/// processes carry it in their environment and profile path).
struct Bench {
    ws: Workspace,
    tmp: PathBuf,
}

impl Bench {
    fn new() -> Bench {
        let ws = Workspace::new(Backend::Sqlite);
        let tmp = ws.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        Bench { ws, tmp }
    }

    fn cmd(&self) -> Command {
        let mut c = self.ws.cmd();
        c.env("TMPDIR", &self.tmp);
        c
    }

    fn run(&self, playbook: &str, portal: &Portal, env: &[(&str, &str)]) -> Run {
        let mut c = self.cmd();
        c.args(["run", playbook, "--json", "--input"]);
        c.arg(format!("portal={}", portal.url));
        for (k, v) in env {
            c.env(k, v);
        }
        Run(c.output().expect("run clerk"))
    }

    /// Opens the portal's sign-in page and reads its heading (with `env`),
    /// checking the run succeeded and read "Sign in".
    fn read_heading(&self, portal: &Portal, env: &[(&str, &str)]) -> Run {
        self.ws.write(
            "heading.yaml",
            "name: heading\ninputs:\n  portal: { type: string }\nsteps:\n  - browser.open: \"{{ inputs.portal }}/login\"\n  - browser.read_text: { css: h2 }\n    save_as: heading\n",
        );
        let run = self.run("heading.yaml", portal, env);
        let v = run.json();
        assert_eq!(
            v["status"],
            "succeeded",
            "{}\n{}",
            run.stdout(),
            run.stderr()
        );
        assert_eq!(v["vars"]["heading"], "Sign in");
        run
    }

    fn events(&self, run_id: &str) -> Vec<Value> {
        let out = self.ws.clerk(&["audit", "export", "--run", run_id]).ok();
        out.stdout()
            .lines()
            .map(|l| serde_json::from_str(l).expect("jsonl line"))
            .collect()
    }

    /// Live processes started for this workspace's runs (zombies excluded).
    fn browser_processes(&self) -> Vec<String> {
        let marker = format!("TMPDIR={}", self.tmp.display());
        let path_marker = self.tmp.display().to_string();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == std::process::id() {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next())
                .unwrap_or("");
            if state == "Z" || state == "X" {
                continue;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            let environ = std::fs::read(entry.path().join("environ"))
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let ours = environ.split('\0').any(|kv| kv == marker) || cmdline.contains(&path_marker);
            // The clerk process itself carries the TMPDIR too; only its browser counts.
            let is_clerk = cmdline.contains(env!("CARGO_BIN_EXE_clerk"));
            if ours && !is_clerk {
                found.push(format!("{pid} {cmdline}"));
            }
        }
        found
    }

    /// Asserts that nothing the runs started is still alive (after a short
    /// grace period for the kernel to deliver SIGKILL).
    #[track_caller]
    fn assert_no_orphans(&self, when: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = self.browser_processes();
            if left.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                panic!("processes survived the run ({when}):\n{}", left.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the running clerk has a browser (Chromium) up.
    fn wait_for_browser(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.browser_processes().iter().any(|p| p.contains("chrom")) {
            assert!(Instant::now() < deadline, "the browser never started");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

fn yaml_value(v: &Value) -> String {
    // JSON is YAML: data goes into playbooks this way, never as templates.
    serde_json::to_string(v).unwrap()
}

/// The sign-in steps, used by every playbook.
fn login_steps(password_expr: &str) -> String {
    format!(
        r#"  - browser.open: "{{{{ inputs.portal }}}}/login"
  - browser.fill: {{ label: "User name", value: demo }}
  - browser.fill: {{ label: "Password", value: "{password_expr}" }}
  - browser.click: {{ text: "Sign in" }}
  - browser.wait_for: {{ text: "Main menu" }}
"#
    )
}

/// Steps that fill and submit the New case form for variable `c` (indented for a block).
fn case_form_steps(indent: &str) -> String {
    let steps = r#"- browser.open: "{{ inputs.portal }}/cases/new"
- browser.fill: { label: "Request id", value: "{{ c.request_id }}" }
- browser.fill: { label: "Applicant name", value: "{{ c.applicant_name }}" }
- browser.fill: { label: "Street address", value: "{{ c.street_address }}" }
- browser.fill: { label: "Postcode", value: "{{ c.postcode }}" }
- browser.fill: { label: "Vehicle plate", value: "{{ c.vehicle_plate }}" }
- browser.select: { label: "Permit type", option: "{{ c.permit_type }}" }
- browser.fill: { label: "Start date", value: "{{ c.start_date }}" }
- browser.fill: { label: "Email", value: "{{ c.email }}" }
- browser.check: { label: "By {{ c.contact_preference | lower }}" }
- browser.fill: { label: "Notes", value: "{{ c.notes }}" }
- browser.check: { label: "Details confirmed" }
"#;
    steps.lines().map(|l| format!("{indent}{l}\n")).collect()
}

fn submit_steps(indent: &str, ref_timeout: &str) -> String {
    let steps = format!(
        r#"- browser.click: {{ text: "Submit case" }}
- browser.dialog: {{ accept: true }}
  save_as: question
- browser.read_text: {{ css: ".case-ref", timeout: {ref_timeout} }}
  save_as: reference
"#
    );
    steps.lines().map(|l| format!("{indent}{l}\n")).collect()
}

/// `n` valid cases with awkward but legal data.
fn sample_cases(n: usize, prefix: &str) -> Vec<Value> {
    let names = [
        "Zoë O'Brien",
        "Jean-Luc Dupont",
        "Ana María López",
        "Søren Kierkegaard",
        "Li Wei",
    ];
    let types = ["Resident", "Visitor", "Business"];
    (0..n)
        .map(|i| {
            json!({
                "request_id": format!("{prefix}-{:03}", i + 1),
                "applicant_name": names[i % names.len()],
                "street_address": format!("{} Rue de l'Église, apt \"B\"", i + 1),
                "postcode": format!("{:04}", 1000 + i * 7),
                "vehicle_plate": format!("AB-{:04}", 100 + i),
                "permit_type": types[i % types.len()],
                "start_date": format!("2026-{:02}-{:02}", 1 + i % 12, 1 + i % 28),
                "email": format!("person{}@example.org", i + 1),
                "contact_preference": if i % 2 == 0 { "Email" } else { "Post" },
                "notes": format!("Case {} of the batch\nsecond line & <b>not html</b>", i + 1),
            })
        })
        .collect()
}

fn message(v: &Value) -> String {
    v["error"]["message"].as_str().unwrap_or("").to_string()
}

// ------------------------------------------------------------------ tests

/// Sign in with a secret password, enter 20 cases by label (the form's ids
/// and names are random on every load), and compare what the portal stored,
/// field by field. No secret reaches the store or the output.
#[test]
fn twenty_cases_are_entered_exactly() {
    let password = "Tr0ub4dor-and-3";
    let portal = Portal::start(&["--password", password]);
    let b = Bench::new();
    let cases = sample_cases(20, "REQ");
    let playbook = format!(
        r#"name: twenty-cases
inputs:
  portal: {{ type: string }}
steps:
{login}  - name: Ids and names of the form change on every load
    browser.open: "{{{{ inputs.portal }}}}/cases/new"
  - browser.read_attribute: {{ label: "Postcode", attribute: id }}
    save_as: first_id
  - browser.open: "{{{{ inputs.portal }}}}/cases/new"
  - browser.read_attribute: {{ label: "Postcode", attribute: id }}
    save_as: second_id
  - set: {{ cases: {data} }}
  - name: Enter each case
    for_each: "{{{{ cases }}}}"
    as: c
    save_as: entered
    output: {{ request_id: "{{{{ c.request_id }}}}", reference: "{{{{ reference }}}}", question: "{{{{ question }}}}" }}
    steps:
{form}{submit}"#,
        login = login_steps("{{ secrets.portal_password }}"),
        data = yaml_value(&Value::Array(cases.clone())),
        form = case_form_steps("      "),
        submit = submit_steps("      ", "10s"),
    );
    b.ws.write("cases.yaml", &playbook);
    let run = b.run(
        "cases.yaml",
        &portal,
        &[
            ("CLERK_SECRET_PORTAL_PASSWORD", password),
            ("RUST_LOG", "clerk=info"),
        ],
    );
    let v = run.json();
    assert_eq!(
        v["status"],
        "succeeded",
        "{}\n{}",
        run.stdout(),
        run.stderr()
    );
    assert_ne!(
        v["vars"]["first_id"], v["vars"]["second_id"],
        "ids must be random"
    );

    let stored = portal.cases();
    assert_eq!(stored.len(), 20, "{stored:?}");
    let entered = v["vars"]["entered"].as_array().unwrap();
    for (i, want) in cases.iter().enumerate() {
        let got = &stored[i];
        for key in [
            "request_id",
            "applicant_name",
            "street_address",
            "postcode",
            "vehicle_plate",
            "permit_type",
            "start_date",
            "email",
            "notes",
            "contact_preference",
        ] {
            assert_eq!(got[key], want[key], "case {i}, field {key}");
        }
        assert_eq!(got["details_confirmed"], true, "case {i}");
        let r = got["reference"].as_str().unwrap();
        assert!(r.starts_with("CASE-") && r.len() == 11, "{r}");
        assert_eq!(entered[i]["reference"], got["reference"], "case {i}");
        assert_eq!(entered[i]["question"], "Submit this case?");
    }

    // The audit names each locator and masks the password.
    let events = b.events(v["id"].as_str().unwrap());
    let pw_fill = events
        .iter()
        .find(|e| e["action"] == "browser.fill" && e["target"] == "label 'Password'")
        .expect("the password fill is audited");
    assert_eq!(pw_fill["detail"]["value"], "***");
    assert!(
        pw_fill["detail"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/login")
    );
    let postcode = events
        .iter()
        .find(|e| {
            e["action"] == "browser.fill"
                && e["target"] == "label 'Postcode'"
                && e["detail"]["value"] == "1000"
        })
        .expect("postcode fill audited with its value");
    assert!(postcode["detail"]["duration_ms"].is_u64());
    let everything = [run.stdout(), run.stderr(), dump_store(&b.ws)].join("\n");
    assert!(!everything.contains(password), "the password leaked");
    b.ws.clerk(&["audit", "verify"]).ok();
    b.assert_no_orphans("after a successful run");
}

/// The portal refuses bad data: the run fails, quoting the portal's messages,
/// with a screenshot and the page HTML as evidence.
#[test]
fn validation_errors_are_quoted_and_evidence_is_kept() {
    let portal = Portal::start(&[]);
    let b = Bench::new();
    let mut bad = sample_cases(1, "BAD")[0].clone();
    bad["postcode"] = json!("12a");
    bad["vehicle_plate"] = json!("ab 1");
    let playbook = format!(
        r#"name: bad-case
inputs:
  portal: {{ type: string }}
steps:
{login}  - set: {{ c: {data} }}
{form}{submit}"#,
        login = login_steps("demo"),
        data = yaml_value(&bad),
        form = case_form_steps("  "),
        submit = submit_steps("  ", "2s"),
    );
    b.ws.write("bad.yaml", &playbook);
    let run = b.run("bad.yaml", &portal, &[]);
    assert_eq!(run.code(), 1, "{}\n{}", run.stdout(), run.stderr());
    let v = run.json();
    let msg = message(&v);
    assert!(
        msg.contains("no element matches css '.case-ref' after 2 s"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("on {}/cases/new", portal.url)),
        "{msg}"
    );
    assert!(msg.contains("Postcode must be 4 digits"), "{msg}");
    assert!(
        msg.contains("Vehicle plate must be 4 to 10 capitals, digits or dashes"),
        "{msg}"
    );
    assert!(portal.cases().is_empty());

    let artifacts: Vec<&str> = v["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let png = artifacts
        .iter()
        .find(|a| a.ends_with(".png"))
        .expect("a screenshot");
    let html = artifacts
        .iter()
        .find(|a| a.ends_with(".html"))
        .expect("the page HTML");
    let png_path = b.ws.path().join(png);
    let bytes = std::fs::read(&png_path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(b.ws.read(html).contains("Postcode must be 4 digits"));
    assert!(msg.contains(png), "{msg}");
    // The failed action's audit event names the files with their SHA-256.
    let events = b.events(v["id"].as_str().unwrap());
    let failed = events
        .iter()
        .find(|e| e["kind"] == "action" && e["outcome"] == "failed")
        .unwrap();
    assert_eq!(failed["action"], "browser.read_text");
    assert_eq!(failed["target"], "css '.case-ref'");
    let recorded = failed["detail"]["artifacts"].as_array().unwrap();
    let shot = recorded.iter().find(|a| a["path"] == *png).unwrap();
    assert_eq!(shot["sha256"], sha256_file(&png_path));
    b.assert_no_orphans("after a failed run");
}

/// Locator errors say what was found instead, and every failure leaves a
/// screenshot; `clerk validate` rejects zero or two locator kinds.
#[test]
fn locator_errors_are_precise() {
    let portal = Portal::start(&[]);
    let b = Bench::new();
    let playbook = format!(
        r#"name: locators
inputs:
  portal: {{ type: string }}
steps:
{login}  - browser.open: "{{{{ inputs.portal }}}}/cases/new"
  - name: nothing matches
    browser.click: {{ text: "Delete everything", timeout: 1s }}
    on_error: continue
  - name: two radios
    browser.click: {{ css: "input[type=radio]", timeout: 1s }}
    on_error: continue
  - name: hidden
    browser.fill: {{ name: "csrf", value: x, timeout: 1s }}
    on_error: continue
  - browser.read_attribute: {{ label: "Start date", attribute: id }}
    save_as: date_id
  - name: nth and within work
    browser.check: {{ css: "input[type=radio]", nth: 2, within: {{ css: fieldset }} }}
  - browser.read_value: {{ label: "By post" }}
    save_as: by_post
  - browser.check: "Details confirmed"
  - browser.uncheck: {{ label: "Details confirmed" }}
  - browser.read_value: {{ label: "Details confirmed" }}
    save_as: confirmed
  - browser.fill: {{ label: "Start date", value: "2026-02-28" }}
  - browser.read_value: {{ id: "{{{{ date_id }}}}" }}
    save_as: date
  - name: wrong kind of element
    browser.fill: {{ label: "Permit type", value: Visitor }}
    on_error: continue
  - name: no such option
    browser.select: {{ label: "Permit type", option: "Diplomat", timeout: 1s }}
    on_error: continue
  - name: bad xpath
    browser.click: {{ xpath: "//button[", timeout: 5s }}
    on_error: continue
  - browser.execute_script: {{ script: "return arguments[0] + document.querySelectorAll('label').length", args: [100] }}
    save_as: labels
"#,
        login = login_steps("demo"),
    );
    b.ws.write("loc.yaml", &playbook);
    let run = b.run("loc.yaml", &portal, &[]);
    let v = run.json();
    assert_eq!(
        v["status"],
        "succeeded",
        "{}\n{}",
        run.stdout(),
        run.stderr()
    );
    assert_eq!(v["vars"]["by_post"], true);
    assert_eq!(v["vars"]["confirmed"], false);
    assert_eq!(v["vars"]["date"], "2026-02-28");
    assert!(v["vars"]["labels"].as_i64().unwrap() > 110);
    let events = b.events(v["id"].as_str().unwrap());
    let error_of = |name: &str| -> String {
        events
            .iter()
            .find(|e| e["kind"] == "action" && e["step_name"] == name)
            .and_then(|e| e["error"].as_str())
            .unwrap_or_else(|| panic!("no failed action named {name}"))
            .to_string()
    };
    let none = error_of("nothing matches");
    assert!(
        none.starts_with(&format!(
            "no element matches text 'Delete everything' after 1 s on {}/cases/new",
            portal.url
        )),
        "{none}"
    );
    assert!(none.contains("(screenshot: .clerk/artifacts/"), "{none}");
    assert!(error_of("two radios").starts_with("2 elements match css 'input[type=radio]'"));
    assert!(error_of("hidden").starts_with("name 'csrf' is present but hidden"));
    assert!(
        error_of("wrong kind of element")
            .contains("is a <select>, not a text field (use browser.select)")
    );
    assert!(error_of("no such option").contains("no option 'Diplomat' in label 'Permit type' (options: -- choose --, Resident, Visitor, Business)"));
    let xpath = error_of("bad xpath");
    assert!(xpath.starts_with("invalid xpath '//button['"), "{xpath}");
    // Every failed step left its own screenshot.
    let pngs = v["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a.as_str().unwrap().ends_with(".png"))
        .count();
    assert_eq!(pngs, 6);

    // Validation (no browser): zero or two locator kinds are refused with positions.
    b.ws.write(
        "invalid.yaml",
        "name: invalid\nsteps:\n  - browser.fill: { label: a, css: b, value: x }\n  - browser.click: { timeout: 2s }\n  - browser.select: { label: a }\n",
    );
    let r = b.ws.clerk(&["validate", "invalid.yaml"]);
    assert_eq!(r.code(), 2, "{}{}", r.stdout(), r.stderr());
    let out = r.stdout() + &r.stderr();
    assert!(
        out.contains("invalid.yaml:3:") && out.contains("only one locator kind, not css and label"),
        "{out}"
    );
    assert!(
        out.contains("invalid.yaml:4:") && out.contains("give one locator"),
        "{out}"
    );
    assert!(
        out.contains("invalid.yaml:5:") && out.contains("`option`"),
        "{out}"
    );
    b.assert_no_orphans("after a run with failed steps");
}

/// The slow, paginated search is read across pages with `read_table`; the
/// report inside an iframe is read; a file is uploaded and the CSV export
/// downloaded and checked.
#[test]
fn search_iframe_upload_and_download() {
    let b = Bench::new();
    // 44 cases on file before the run: three pages of search results.
    let mut seeded = Vec::new();
    for (i, c) in sample_cases(44, "OLD").into_iter().enumerate() {
        let mut c = c;
        c["reference"] = json!(format!("CASE-{:06}", 500 + i));
        c["details_confirmed"] = json!(true);
        c["document_name"] = Value::Null;
        c["document_size"] = Value::Null;
        seeded.push(c);
    }
    let data =
        b.ws.write("portal-data.json", &serde_json::to_string(&seeded).unwrap());
    let portal = Portal::start(&["--slow", "150", "--data", data.to_str().unwrap()]);
    b.ws.write("fixtures/permit.txt", "scanned permit application\n");
    let new_case = sample_cases(1, "UPL")[0].clone();
    let playbook = format!(
        r##"name: search-and-files
inputs:
  portal: {{ type: string }}
steps:
{login}  - browser.open: "{{{{ inputs.portal }}}}/cases?q="
  - browser.read_table: {{ css: "table#results", next: {{ text: "Next" }}, timeout: 20s }}
    save_as: listed
  - name: Real keystrokes in the search box, then Enter
    browser.type: {{ label: "Search", value: "OLD-04", clear: true }}
  - browser.press: Enter
  - browser.wait_for: {{ id: "results-area", contains: "5 cases found", timeout: 20s }}
  - browser.read_table: {{ css: "#results-area" }}
    save_as: narrowed
  - browser.wait_for: {{ text: "Next", state: gone }}
  - browser.open: "{{{{ inputs.portal }}}}/reports"
  - browser.frame: {{ css: "iframe[name=reportframe]" }}
  - browser.read_text: {{ id: "case-count" }}
    save_as: in_frame
  - browser.frame: top
  - browser.read_text: {{ css: h2 }}
    save_as: heading
  - set: {{ c: {data} }}
{form}  - browser.upload: {{ label: "Supporting document", path: fixtures/permit.txt }}
    save_as: uploaded
{submit}  - browser.open: "{{{{ inputs.portal }}}}/"
  - browser.download: {{ text: "Export CSV", save_to: out/cases.csv }}
    save_as: export
  - browser.screenshot: {{ path: out/menu.png }}
"##,
        login = login_steps("demo"),
        data = yaml_value(&new_case),
        form = case_form_steps("  "),
        submit = submit_steps("  ", "10s"),
    );
    b.ws.write("files.yaml", &playbook);
    let run = b.run("files.yaml", &portal, &[]);
    let v = run.json();
    assert_eq!(
        v["status"],
        "succeeded",
        "{}\n{}",
        run.stdout(),
        run.stderr()
    );
    let vars = &v["vars"];

    let listed = vars["listed"].as_array().unwrap();
    assert_eq!(listed.len(), 44);
    let refs: BTreeSet<&str> = listed
        .iter()
        .map(|r| r["Reference"].as_str().unwrap())
        .collect();
    let want: BTreeSet<String> = (0..44).map(|i| format!("CASE-{:06}", 500 + i)).collect();
    assert_eq!(refs, want.iter().map(String::as_str).collect());
    assert_eq!(listed[0]["Applicant name"], "Zoë O'Brien");
    assert_eq!(listed[43]["Request id"], "OLD-044");
    let events = b.events(v["id"].as_str().unwrap());
    let table = events
        .iter()
        .find(|e| e["action"] == "browser.read_table")
        .unwrap();
    assert_eq!(table["detail"]["pages"], 3);

    let narrowed: Vec<&str> = vars["narrowed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Request id"].as_str().unwrap())
        .collect();
    assert_eq!(
        narrowed,
        ["OLD-040", "OLD-041", "OLD-042", "OLD-043", "OLD-044"]
    );
    let typed = events
        .iter()
        .find(|e| e["action"] == "browser.press")
        .unwrap();
    assert!(
        typed["detail"]["url"]
            .as_str()
            .unwrap()
            .contains("q=OLD-04"),
        "{typed}"
    );
    assert_eq!(vars["in_frame"], "44");
    assert_eq!(vars["heading"], "Reports");

    let stored = portal.cases();
    assert_eq!(stored.len(), 45);
    assert_eq!(stored[44]["document_name"], "permit.txt");
    assert_eq!(stored[44]["document_size"], 27);
    assert_eq!(vars["uploaded"]["size"], 27);

    let csv = b.ws.read("out/cases.csv");
    assert!(
        csv.starts_with("Reference,Request id,Applicant name"),
        "{csv}"
    );
    let records: Vec<csv::StringRecord> = csv::Reader::from_reader(csv.as_bytes())
        .records()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(records.len(), 45);
    let last = &records[44];
    assert_eq!(&last[1], "UPL-001");
    assert_eq!(&last[12], "permit.txt");
    assert_eq!(&last[13], "27");
    assert_eq!(
        &last[9],
        "Case 1 of the batch\nsecond line & <b>not html</b>"
    );
    assert_eq!(vars["export"]["name"], "cases.csv");
    assert_eq!(
        vars["export"]["sha256"],
        sha256_file(&b.ws.path().join("out/cases.csv"))
    );
    let kept =
        b.ws.path()
            .join(".clerk/artifacts")
            .join(v["id"].as_str().unwrap())
            .join("downloads/cases.csv");
    assert_eq!(std::fs::read_to_string(kept).unwrap(), csv);
    let png = std::fs::read(b.ws.path().join("out/menu.png")).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
    b.assert_no_orphans("after the files run");
}

/// Playbook steps that enter case `c` in a retry block which signs in again
/// when the session has expired and skips cases the portal already has.
fn resilient_entry(pause_if: &str) -> String {
    format!(
        r#"  - name: Enter each case
    for_each: "{{{{ cases }}}}"
    as: c
    save_as: entered
    output: "{{{{ reference }}}}"
    steps:
      - name: Enter the case (retried)
        retry: {{ attempts: 3, delay: 200ms }}
        steps:
          - browser.open: "{{{{ inputs.portal }}}}/cases/new"
          - browser.read_text: {{ css: h2 }}
            save_as: heading
          - name: Sign in again (the session expired)
            if: "{{{{ heading == 'Sign in' }}}}"
            steps:
              - browser.fill: {{ label: "User name", value: demo }}
              - browser.fill: {{ label: "Password", value: demo }}
              - browser.click: {{ text: "Sign in" }}
          - name: Already on file? (a failed attempt may have stored it)
            browser.open: "{{{{ inputs.portal }}}}/cases?q={{{{ c.request_id }}}}"
          - browser.read_table: {{ css: "table#results" }}
            save_as: found
          - set: {{ reference: "{{{{ found[0]['Reference'] if found else '' }}}}" }}
          - name: Fill and submit
            if: "{{{{ not found }}}}"
            steps:
{form}              - name: A slow clerk (only once)
                if: "{{{{ {pause_if} and not paused }}}}"
                steps:
                  - set: {{ paused: true }}
                  - wait: 3s
{submit}"#,
        form = case_form_steps("              "),
        submit = submit_steps("              ", "2s"),
    )
}

/// `--session-idle 2`: the session expires while a form is open; the retry
/// block signs in again and the case is entered once.
#[test]
fn session_expiry_is_recovered_by_retry() {
    let portal = Portal::start(&["--session-idle", "2"]);
    let b = Bench::new();
    let cases = sample_cases(3, "EXP");
    let playbook = format!(
        r#"name: expiry
inputs:
  portal: {{ type: string }}
steps:
{login}  - set: {{ paused: false, cases: {data} }}
{entry}"#,
        login = login_steps("demo"),
        data = yaml_value(&Value::Array(cases.clone())),
        entry = resilient_entry("c.request_id == 'EXP-002'"),
    );
    b.ws.write("expiry.yaml", &playbook);
    let run = b.run("expiry.yaml", &portal, &[]);
    let v = run.json();
    assert_eq!(
        v["status"],
        "succeeded",
        "{}\n{}",
        run.stdout(),
        run.stderr()
    );
    let stored = portal.cases();
    let ids: Vec<&str> = stored
        .iter()
        .map(|c| c["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["EXP-001", "EXP-002", "EXP-003"]);
    let refs: Vec<&Value> = stored.iter().map(|c| &c["reference"]).collect();
    let entered: Vec<&Value> = v["vars"]["entered"].as_array().unwrap().iter().collect();
    assert_eq!(refs, entered);
    // The expiry really happened: a first attempt failed on the sign-in page.
    let events = b.events(v["id"].as_str().unwrap());
    let failed: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "action" && e["outcome"] == "failed")
        .collect();
    let timeline: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {} {}",
                e["kind"], e["step"], e["action"], e["outcome"], e["error"]
            )
        })
        .collect();
    assert_eq!(failed.len(), 1, "{}", timeline.join("\n"));
    let err = failed[0]["error"].as_str().unwrap();
    assert!(err.contains("/login?expired=1"), "{err}");
    assert!(
        events
            .iter()
            .any(|e| e["step_name"] == "Sign in again (the session expired)"
                && e["outcome"] == "ok"
                && e["kind"] == "step.finished")
    );
    b.assert_no_orphans("after the expiry run");
}

/// `--fail-every 3`: every third submission is an HTTP 500 that stores
/// nothing; retries enter every case exactly once.
#[test]
fn server_errors_are_retried_without_duplicates() {
    let portal = Portal::start(&["--fail-every", "3"]);
    let b = Bench::new();
    let cases = sample_cases(7, "FLT");
    let playbook = format!(
        r#"name: faults
inputs:
  portal: {{ type: string }}
steps:
{login}  - set: {{ paused: false, cases: {data} }}
{entry}"#,
        login = login_steps("demo"),
        data = yaml_value(&Value::Array(cases.clone())),
        entry = resilient_entry("false"),
    );
    b.ws.write("faults.yaml", &playbook);
    let run = b.run("faults.yaml", &portal, &[]);
    let v = run.json();
    assert_eq!(
        v["status"],
        "succeeded",
        "{}\n{}",
        run.stdout(),
        run.stderr()
    );
    let stored = portal.cases();
    let ids: Vec<&str> = stored
        .iter()
        .map(|c| c["request_id"].as_str().unwrap())
        .collect();
    let want: Vec<String> = cases
        .iter()
        .map(|c| c["request_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, want, "each case exactly once, in order");
    // 7 cases + 3 failed submissions (the 3rd, 6th and 9th) = 10 submissions.
    let events = b.events(v["id"].as_str().unwrap());
    let failures: Vec<String> = events
        .iter()
        .filter(|e| e["kind"] == "action" && e["outcome"] == "failed")
        .map(|e| e["error"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(failures.len(), 3, "{failures:?}");
    // The 500 page is noticed where it happens: the answer to the confirm()
    // that let the form through (not by a later read timing out).
    for f in &failures {
        assert!(
            f.starts_with("the portal answered 500 Internal Server Error on POST /cases/new"),
            "{f}"
        );
    }
    let failed_actions: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "action" && e["outcome"] == "failed")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(failed_actions, ["browser.dialog"; 3]);
    b.assert_no_orphans("after the retried run");
}

/// No chromium or chromedriver survives a run that is cancelled (Ctrl-C),
/// killed outright (SIGKILL), or stopped by a step timeout.
#[test]
fn no_orphans_after_cancel_kill_or_timeout() {
    let portal = Portal::start(&[]);
    let b = Bench::new();
    let playbook = r##"name: hang
inputs:
  portal: { type: string }
steps:
  - browser.open: "{{ inputs.portal }}/login"
  - name: Waits for something that never comes
    browser.wait_for: { css: "#never", timeout: 120s }
"##;
    b.ws.write("hang.yaml", playbook);
    let playbook = r#"name: stuck
inputs:
  portal: { type: string }
steps:
  - browser.open: "{{ inputs.portal }}/login"
  - name: Stuck
    wait: 60s
    timeout: 2s
"#;
    b.ws.write("stuck.yaml", playbook);
    let portal_input = format!("portal={}", portal.url);

    for signal in ["-INT", "-KILL"] {
        let child = b
            .cmd()
            .args(["run", "hang.yaml", "--json", "--input", &portal_input])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        b.wait_for_browser();
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let out = child.wait_with_output().unwrap();
        if signal == "-INT" {
            assert_eq!(out.status.code(), Some(1));
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["status"], "cancelled");
        } else {
            assert_eq!(out.status.code(), None, "killed by a signal");
        }
        b.assert_no_orphans(&format!("after kill {signal}"));
    }

    // A step timeout ends the run; the browser goes with it.
    let r = Run(b
        .cmd()
        .args(["run", "stuck.yaml", "--json", "--input", &portal_input])
        .output()
        .unwrap());
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    let v = r.json();
    assert!(
        message(&v).contains("timed out after 2s"),
        "{}",
        message(&v)
    );
    b.assert_no_orphans("after a step timeout");
}

/// The example playbook enters a case; run again, it finds the case on file
/// instead of entering it twice.
#[test]
fn example_playbook_is_safe_to_rerun() {
    let portal = Portal::start(&["--password", "example-pw-77"]);
    let b = Bench::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    b.ws.write(
        "portal-new-case.yaml",
        &std::fs::read_to_string(root.join("playbooks/portal-new-case.yaml")).unwrap(),
    );
    b.ws.write(
        "fixtures/hello.txt",
        &std::fs::read_to_string(root.join("fixtures/hello.txt")).unwrap(),
    );
    let env = [("CLERK_SECRET_PORTAL_PASSWORD", "example-pw-77")];
    let first = b.run("portal-new-case.yaml", &portal, &env);
    let v1 = first.json();
    assert_eq!(
        v1["status"],
        "succeeded",
        "{}\n{}",
        first.stdout(),
        first.stderr()
    );
    let second = b.run("portal-new-case.yaml", &portal, &env);
    let v2 = second.json();
    assert_eq!(
        v2["status"],
        "succeeded",
        "{}\n{}",
        second.stdout(),
        second.stderr()
    );
    let stored = portal.cases();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["request_id"], "REQ-EXAMPLE-1");
    assert_eq!(stored[0]["applicant_name"], "Zoë O'Brien");
    assert_eq!(stored[0]["document_name"], "hello.txt");
    assert_eq!(v1["vars"]["reference"], stored[0]["reference"]);
    assert_eq!(v2["vars"]["reference"], stored[0]["reference"]);
    assert_eq!(v1["vars"]["already_on_file"], false);
    assert_eq!(v2["vars"]["already_on_file"], true);
    assert!(b.ws.path().join("out/case-REQ-EXAMPLE-1.png").is_file());
    b.assert_no_orphans("after the example runs");
}

/// A headless run uses Chromium's headless shell when it is installed (the
/// browser names itself in the session it opens), the full Chromium with
/// `headless_shell: false`; both read the same page, and neither leaves a
/// process behind.
#[test]
fn headless_runs_use_the_headless_shell_when_installed() {
    assert!(
        Path::new("/usr/bin/chromium-headless-shell").exists(),
        "Debian's chromium-headless-shell is missing (scripts/test installs it)"
    );
    let portal = Portal::start(&[]);
    let b = Bench::new();
    for (env, browser) in [
        (None, "browser=chrome-headless-shell "),
        (Some("false"), "browser=chrome "),
    ] {
        let env: Vec<(&str, &str)> = env
            .map(|v| ("CLERK_BROWSER_HEADLESS_SHELL", v))
            .into_iter()
            .collect();
        let run = b.read_heading(&portal, &env);
        assert!(
            run.stderr().contains(browser),
            "expected {browser:?} with {env:?}:\n{}",
            run.stderr()
        );
        b.assert_no_orphans(browser);
    }
}

/// `browser.webdriver_url` uses a WebDriver server that is already running;
/// clerk starts no chromedriver of its own and leaves that server running.
#[test]
fn an_existing_webdriver_server_can_be_used() {
    let portal = Portal::start(&[]);
    let b = Bench::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut driver = {
        use std::os::unix::process::CommandExt;
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver on PATH")
    };
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let run = b.read_heading(&portal, &[("CLERK_BROWSER_WEBDRIVER_URL", url.as_str())]);
    assert!(
        run.stderr().contains(&format!("webdriver={url}")),
        "{}",
        run.stderr()
    );
    assert!(
        b.browser_processes().is_empty(),
        "clerk started a browser of its own"
    );
    assert!(
        driver.try_wait().unwrap().is_none(),
        "the external server must keep running"
    );
    // The group holds chromedriver and anything it left behind.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", driver.id())])
        .status();
    let _ = driver.wait();
}
