//! Legacy pages as they really are (issue 15), through real `clerk` runs,
//! real headless Chromium and the real `fixtures/legacy-portal` (both its
//! 2004 style and its `--style 2003` frameset): every label rule, anchors,
//! frame auto-search, the errors that say what the page has, `wait_for
//! any`, `read_texts`, optional dialogs, HTTP 5xx detection, business errors
//! that fail at once, and navigation waits across frames.
//!
//! Pages that need no server (the label rules) are files opened with
//! `file://`; everything with frames, forms and status codes is the portal.

mod common;

use common::portal::Portal;
use common::{Backend, Run, Workspace};
use serde_json::Value;

struct Bench {
    ws: Workspace,
}

impl Bench {
    fn new() -> Bench {
        Bench {
            ws: Workspace::new(Backend::Sqlite),
        }
    }

    fn run(&self, playbook: &str, inputs: &[(&str, &str)]) -> Run {
        let mut c = self.ws.cmd();
        c.args(["run", playbook, "--json"]);
        for (k, v) in inputs {
            c.arg("--input").arg(format!("{k}={v}"));
        }
        Run(c.output().expect("run clerk"))
    }

    fn events(&self, run_id: &str) -> Vec<Value> {
        let out = self.ws.clerk(&["audit", "export", "--run", run_id]).ok();
        out.stdout()
            .lines()
            .map(|l| serde_json::from_str(l).expect("jsonl line"))
            .collect()
    }

    /// Runs a playbook that must succeed; returns its JSON and its events.
    #[track_caller]
    fn ok(&self, name: &str, yaml: &str, inputs: &[(&str, &str)]) -> (Value, Vec<Value>) {
        self.ws.write(name, yaml);
        let r = self.run(name, inputs);
        let v = r.json();
        assert_eq!(v["status"], "succeeded", "{}\n{}", r.stdout(), r.stderr());
        let events = self.events(v["id"].as_str().expect("run id"));
        (v, events)
    }
}

/// The action event of the step with this name.
#[track_caller]
fn event<'a>(events: &'a [Value], step_name: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["kind"] == "action" && e["step_name"] == step_name)
        .unwrap_or_else(|| panic!("no action event for step {step_name}"))
}

#[track_caller]
fn error_of(events: &[Value], step_name: &str) -> String {
    event(events, step_name)["error"]
        .as_str()
        .unwrap_or_else(|| panic!("step {step_name} did not fail"))
        .to_string()
}

const LOGIN: &str = r#"  - browser.open: "{{ inputs.portal }}/login"
  - browser.fill: { label: "User name", value: demo }
  - browser.fill: { label: "Password", value: demo }
  - browser.click: { text: "Sign in" }
  - browser.wait_for: { text: "Sign out" }
"#;

/// One form with a field for every rule of docs/browser.md, in that order.
const RULES_PAGE: &str = r#"<!DOCTYPE html>
<html><head><title>Label rules</title></head><body>
<form onsubmit="return false">
<p><label for="f1">Given name</label> <input id="f1"></p>
<p><label>Family name <input id="f2"></label></p>
<p><span id="cap3">Date of birth</span> <input id="f3" aria-labelledby="cap3"></p>
<p><input id="f4" aria-label="Nickname"></p>
<div class="form-group"><label>First Name</label><input id="f5"></div>
<p>Middle name: <input id="f6"></p>
<p><b>Maiden name</b> <input id="f7"></p>
<p><span>Suffix</span><input id="f8"></p>
<table border="1">
<tr><td>Username:</td><td><input name="usr" id="f9"></td></tr>
<tr><th>Department</th><th>Room</th></tr>
<tr><td><input id="f10"></td><td><input id="f11"></td></tr>
</table>
<p><input id="f12" placeholder="Search cases"></p>
<p><input id="f13" title="Phone number"></p>
<p><input type="radio" name="c" value="e" id="r1"> By email <input type="radio" name="c" value="p" id="r2"> By post</p>
<p><input type="checkbox" id="c1"> I agree</p>
<p>Account number: <input id="f14"></p>
<div style="display:flex"><div>Customer code</div><div style="margin-left:40px"><div><input id="f16"></div></div></div>
<div style="margin-top:20px">Branch</div><div><input id="f17"></div>
<p>Email <input id="e1"></p>
<p>EMAIL: <input id="e2"></p>
<p>Locked <input id="lk" value="x" disabled></p>
</form>
</body></html>
"#;

#[test]
fn every_label_rule_finds_its_field() {
    let b = Bench::new();
    let page = b.ws.write("rules.html", RULES_PAGE);
    let url = format!("file://{}", page.display());
    let (v, events) = b.ok(
        "rules.yaml",
        r#"name: rules
inputs:
  page: { type: string }
steps:
  - browser.open: "{{ inputs.page }}"
  - name: label for
    browser.fill: { label: "Given name", value: v1 }
  - name: nesting
    browser.fill: { label: "Family name", value: v2 }
  - name: aria-labelledby
    browser.fill: { label: "Date of birth", value: v3 }
  - name: aria-label
    browser.fill: { label: "Nickname", value: v4 }
  - name: label before without for
    browser.fill: { label: "First Name", value: v5 }
  - name: text node before
    browser.fill: { label: "Middle name", value: v6 }
  - name: b before
    browser.fill: { label: "Maiden name", value: v7 }
  - name: span before
    browser.fill: { label: "Suffix", value: v8 }
  - name: cell to the left
    browser.fill: { label: "Username", value: v9 }
  - name: cell above
    browser.fill: { label: "Department", value: v10 }
  - name: another cell above
    browser.fill: { label: "Room", value: v11 }
  - name: placeholder
    browser.fill: { label: "Search cases", value: v12 }
  - name: title
    browser.fill: { label: "Phone number", value: v13 }
  - name: radio by the text after it
    browser.check: { label: "By post" }
  - name: checkbox by the text after it
    browser.check: { label: "I agree" }
  - name: case colon and spaces ignored
    browser.fill: { label: "  account NUMBER : ", value: v14 }
  - name: right_of anchor
    browser.fill: { right_of: "Customer code", value: v16 }
  - name: near anchor
    browser.fill: { near: "Branch", value: v17 }
  - name: exact case wins over loose
    browser.fill: { label: "EMAIL", value: v-e2 }
  - browser.execute_script:
      script: |
        var out = {};
        document.querySelectorAll('input').forEach(function (e) {
          out[e.id] = (e.type === 'radio' || e.type === 'checkbox') ? e.checked : e.value;
        });
        return out;
    save_as: values
"#,
        &[("page", &url)],
    );
    let values = &v["vars"]["values"];
    for i in 1..=14 {
        assert_eq!(values[format!("f{i}")], format!("v{i}"), "f{i}: {values}");
    }
    assert_eq!(values["f16"], "v16", "{values}");
    assert_eq!(values["f17"], "v17", "{values}");
    assert_eq!(values["e2"], "v-e2", "{values}");
    assert_eq!(values["e1"], "", "{values}");
    assert_eq!(values["r2"], true);
    assert_eq!(values["r1"], false);
    assert_eq!(values["c1"], true);
    // The audit names the locator of each rule.
    assert_eq!(
        event(&events, "cell to the left")["target"],
        "label 'Username'"
    );
    assert_eq!(
        event(&events, "right_of anchor")["target"],
        "the field right_of 'Customer code'"
    );
}

#[test]
fn label_errors_say_what_the_page_has() {
    let b = Bench::new();
    let page = b.ws.write("rules.html", RULES_PAGE);
    let url = format!("file://{}", page.display());
    let (v, events) = b.ok(
        "errors.yaml",
        r#"name: errors
inputs:
  page: { type: string }
steps:
  - browser.open: "{{ inputs.page }}"
  - name: a typo
    browser.fill: { label: "Given nme", value: x, timeout: 1s }
    on_error: continue
  - name: ambiguous
    browser.fill: { label: "email", value: x, timeout: 1s }
    on_error: continue
  - name: no anchor
    browser.fill: { right_of: "Fax number", value: x, timeout: 1s }
    on_error: continue
  - name: disabled field
    browser.fill: { label: "Locked", value: y, timeout: 10s }
    on_error:
      - set: { disabled_kind: "{{ error.kind }}" }
  - name: no such radio value
    browser.check: { name: c, value: "Fax", timeout: 10s }
    on_error:
      - set: { radio_kind: "{{ error.kind }}" }
  - name: radio by value
    browser.check: { name: c, value: "By email" }
  - browser.read_value: { id: r1 }
    save_as: r1
  - name: radio by the bare text after it, as text
    browser.check: { text: "By post" }
  - browser.read_value: { id: r2 }
    save_as: r2
"#,
        &[("page", &url)],
    );
    let typo = error_of(&events, "a typo");
    assert!(
        typo.starts_with("no element matches label 'Given nme' (did you mean 'Given name'?); the form fields here are labelled 'Given name', 'Family name', 'Date of birth', 'Nickname', 'First Name'"),
        "{typo}"
    );
    assert!(typo.contains("after 1 s on file://"), "{typo}");
    assert!(!typo.contains("no <label>"), "{typo}");
    let many = error_of(&events, "ambiguous");
    assert!(
        many.starts_with("2 elements match label 'email' (add nth or within): <input id=\"e1\"> (text-before 'Email'), <input id=\"e2\"> (text-before 'EMAIL:')"),
        "{many}"
    );
    let anchor = error_of(&events, "no anchor");
    assert!(
        anchor.starts_with("no text 'Fax number' for right_of on the page"),
        "{anchor}"
    );
    assert_eq!(v["vars"]["disabled_kind"], "business");
    let disabled = event(&events, "disabled field");
    assert!(
        disabled["error"]
            .as_str()
            .unwrap()
            .starts_with("label 'Locked' is present but disabled"),
        "{disabled}"
    );
    assert!(disabled["duration_ms"].as_i64().unwrap() < 10_000);
    assert_eq!(v["vars"]["radio_kind"], "business");
    let radio = event(&events, "no such radio value");
    assert!(
        radio["error"].as_str().unwrap().starts_with(
            "no radio button or checkbox with value 'Fax' in name 'c' (values: e ('By email'), p ('By post'))"
        ),
        "{radio}"
    );
    assert!(radio["duration_ms"].as_i64().unwrap() < 10_000);
    assert_eq!(v["vars"]["r1"], true);
    assert_eq!(v["vars"]["r2"], true);
}

/// The 2003 portal: fields inside the `main` frame are found without
/// `browser.frame`; misses name the frames and the captions there; a link
/// in one frame that loads another is waited for; the reference comes
/// from an alert; an optional dialog that does not come is `null`.
#[test]
fn portal_2003_frames_outcomes_and_dialogs() {
    let portal = Portal::start(&["--style", "2003"]);
    let b = Bench::new();
    let yaml = format!(
        r#"name: frames
inputs:
  portal: {{ type: string }}
steps:
{LOGIN}  - name: a link in the menu frame loads the main frame
    browser.click: {{ text: "New case" }}
  - name: read right after the click
    browser.read_text: {{ css: "table b" }}
    save_as: heading
  - name: a field in a frame that was not entered
    browser.fill: {{ label: "Request id", value: "F-1" }}
  - name: no such field in any frame
    browser.fill: {{ label: "Postal code", value: x, timeout: 1s }}
    on_error: continue
  - name: in several frames
    browser.read_text: {{ css: "b", timeout: 1s }}
    on_error: continue
  - name: missing option
    browser.select: {{ label: "Permit type", option: "Diplomat", timeout: 10s }}
    on_error:
      - set: {{ select_kind: "{{{{ error.kind }}}}" }}
  - browser.click: {{ text: "Submit case" }}
  - browser.dialog: {{ accept: true }}
  - name: the portal's answer
    browser.wait_for:
      any:
        entered: {{ css: ".case-ref" }}
        alerted: {{ dialog: true }}
        rejected: {{ css: "span.error, font[color=red]" }}
    save_as: refused
  - browser.read_texts: {{ css: "font[color=red]" }}
    save_as: errors
  - name: no dialog comes
    browser.dialog: {{ optional: true, timeout: 500ms }}
    save_as: nothing
  - browser.fill: {{ label: "Applicant name", value: "Ann Example" }}
  - browser.fill: {{ label: "Street address", value: "1 Main Street" }}
  - browser.fill: {{ label: "Postcode", value: "1000" }}
  - browser.fill: {{ label: "Vehicle plate", value: "AB-123" }}
  - browser.select: {{ label: "Permit type", option: "visitor" }}
  - browser.fill: {{ label: "Start date", value: "2026-03-01" }}
  - browser.fill: {{ label: "Email", value: "ann@example.org" }}
  - browser.check: {{ label: "By post" }}
  - browser.check: {{ label: "Details confirmed" }}
  - browser.click: {{ text: "Submit case" }}
  - browser.dialog: {{ accept: true }}
  - name: the second answer
    browser.wait_for:
      any:
        entered: {{ css: ".case-ref" }}
        alerted: {{ dialog: true }}
        rejected: {{ css: "span.error, font[color=red]" }}
    save_as: accepted
  - name: the alert
    browser.dialog: {{ accept: true, optional: true }}
    save_as: message
"#
    );
    let (v, events) = b.ok("frames.yaml", &yaml, &[("portal", &portal.url)]);
    let vars = &v["vars"];
    assert_eq!(vars["heading"], "New permit case");
    assert_eq!(
        event(&events, "a field in a frame that was not entered")["detail"]["frame"],
        "main"
    );
    let miss = error_of(&events, "no such field in any frame");
    assert!(
        miss.starts_with("no element matches label 'Postal code' in the page or its 3 frames banner, menu, main (did you mean 'Postcode'?); the form fields here are labelled 'Request id', 'Applicant name'"),
        "{miss}"
    );
    assert!(miss.contains("the page has no <label> elements"), "{miss}");
    let several = error_of(&events, "in several frames");
    assert!(
        several.starts_with(
            "css 'b' matches in 3 frames (banner, menu, main): enter one with browser.frame"
        ),
        "{several}"
    );
    assert_eq!(vars["select_kind"], "business");
    let select = event(&events, "missing option");
    assert!(
        select["error"].as_str().unwrap().starts_with(
            "no option 'Diplomat' in label 'Permit type' (options: -- choose --, Resident, Visitor, Business)"
        ),
        "{select}"
    );
    let took = select["duration_ms"].as_i64().unwrap();
    eprintln!("select with a missing option failed after {took} ms (timeout 10 s)");
    assert!(took < 10_000);

    assert_eq!(
        vars["refused"]["matched"], "rejected",
        "{}",
        vars["refused"]
    );
    let texts: Vec<&str> = vars["refused"]["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(texts.contains(&"Applicant name is required"), "{texts:?}");
    assert!(texts.contains(&"Please choose a permit type"), "{texts:?}");
    assert_eq!(vars["errors"].as_array().unwrap().len(), texts.len());
    assert_eq!(vars["nothing"], Value::Null);
    let nothing = event(&events, "no dialog comes");
    assert_eq!(nothing["outcome"], "ok");
    assert!(nothing["detail"]["artifacts"].is_null(), "{nothing}");

    assert_eq!(vars["accepted"]["matched"], "alerted");
    let message = vars["message"].as_str().unwrap();
    let cases = portal.cases();
    assert_eq!(cases.len(), 1, "{cases:?}");
    let reference = cases[0]["reference"].as_str().unwrap();
    assert_eq!(message, format!("Case registered. Reference: {reference}"));
    assert_eq!(cases[0]["contact_preference"], "Post");
    assert_eq!(cases[0]["request_id"], "F-1");
    // What was read is in the audit: the alert's text, the rejection texts.
    assert_eq!(
        event(&events, "the alert")["detail"]["value"],
        message,
        "the dialog's message is recorded"
    );
    assert_eq!(
        event(&events, "the portal's answer")["detail"]["matched"],
        "rejected"
    );
}

/// The example `playbooks/legacy-frames.yaml` enters a case into the 2003
/// portal; run again, the portal's refusal is a business exception quoting it.
#[test]
fn the_frames_example_playbook_runs() {
    let portal = Portal::start(&["--style", "2003"]);
    let b = Bench::new();
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/legacy-frames.yaml"),
    )
    .expect("the example playbook");
    b.ws.write("legacy-frames.yaml", &text);
    let run = |b: &Bench| {
        let mut c = b.ws.cmd();
        c.args(["run", "legacy-frames.yaml", "--json", "--input"]);
        c.arg(format!("portal={}", portal.url));
        c.env("CLERK_SECRET_PORTAL_PASSWORD", "demo");
        Run(c.output().expect("run clerk")).json()
    };
    let first = run(&b);
    assert_eq!(first["status"], "succeeded", "{first}");
    let cases = portal.cases();
    assert_eq!(cases.len(), 1);
    assert_eq!(first["vars"]["reference"], cases[0]["reference"]);
    assert_eq!(cases[0]["contact_preference"], "Post");
    let second = run(&b);
    assert_eq!(second["status"], "failed", "{second}");
    assert_eq!(
        second["error"]["message"],
        "A case with this request id already exists"
    );
    assert_eq!(portal.cases().len(), 1);
}

/// Enter in a form and a click wait for the page they load: a read right
/// after them sees the new page; `wait: navigation` insists on one.
#[test]
fn keys_and_clicks_wait_for_the_page_they_load() {
    let portal = Portal::start(&["--slow", "300"]);
    let b = Bench::new();
    let yaml = r#"name: nav
inputs:
  portal: { type: string }
steps:
  - browser.open: "{{ inputs.portal }}/login"
  - browser.fill: { label: "User name", value: demo }
  - browser.fill: { label: "Password", value: demo }
  - name: enter in the password field
    browser.press: { keys: Enter, label: "Password" }
  - browser.read_text: { css: h2 }
    save_as: after_enter
  - name: a link
    browser.click: { text: "Search cases" }
  - browser.read_text: { css: h2 }
    save_as: after_click
  - name: no navigation where one is required
    browser.click: { css: h2, wait: navigation, timeout: 2s }
    on_error:
      - set: { nav_kind: "{{ error.kind }}" }
  - name: no navigation and none required
    browser.click: { css: h2 }
"#;
    let (v, events) = b.ok("nav.yaml", yaml, &[("portal", &portal.url)]);
    assert_eq!(v["vars"]["after_enter"], "Main menu");
    assert_eq!(v["vars"]["after_click"], "Search cases");
    let enter = event(&events, "enter in the password field");
    assert_eq!(enter["detail"]["navigated"], true, "{enter}");
    assert_eq!(enter["detail"]["http_status"], 200, "{enter}");
    assert_eq!(event(&events, "a link")["detail"]["navigated"], true);
    assert_eq!(v["vars"]["nav_kind"], "system");
    assert!(
        error_of(&events, "no navigation where one is required")
            .starts_with("no new page loaded within 2 s (wait: navigation)")
    );
    let stayed = event(&events, "no navigation and none required");
    assert_eq!(stayed["outcome"], "ok");
    assert!(stayed["detail"]["navigated"].is_null(), "{stayed}");
}

/// A 5xx page after `open` and after a form submission fails the step as a
/// retryable system error naming method and path; `http_errors: ignore`
/// (per step or for the run) lets it through.
#[test]
fn server_errors_after_open_and_submit_are_system_errors() {
    let portal = Portal::start(&["--fail-every", "1"]);
    let b = Bench::new();
    let yaml = format!(
        r#"name: http
inputs:
  portal: {{ type: string }}
steps:
  - name: open a 500 page
    browser.open: "{{{{ inputs.portal }}}}/_fixture/status/500"
    on_error:
      - set: {{ open_kind: "{{{{ error.kind }}}}" }}
  - name: ignored for this step
    browser.open: {{ url: "{{{{ inputs.portal }}}}/_fixture/status/503", http_errors: ignore }}
  - browser.settings: {{ http_errors: ignore }}
  - name: ignored for the run
    browser.open: "{{{{ inputs.portal }}}}/_fixture/status/502"
  - browser.settings: {{ http_errors: fail }}
  - name: a 404 is not a server error
    browser.open: "{{{{ inputs.portal }}}}/_fixture/status/404"
{LOGIN}  - browser.open: "{{{{ inputs.portal }}}}/cases/new"
  - browser.fill: {{ label: "Request id", value: "H-1" }}
  - browser.click: {{ text: "Submit case" }}
  - name: the confirmation lets the form through
    browser.dialog: {{ accept: true }}
    on_error:
      - set: {{ submit_kind: "{{{{ error.kind }}}}" }}
"#
    );
    let (v, events) = b.ok("http.yaml", &yaml, &[("portal", &portal.url)]);
    assert_eq!(v["vars"]["open_kind"], "system");
    let open = error_of(&events, "open a 500 page");
    assert!(
        open.starts_with(
            "the portal answered 500 Internal Server Error on GET /_fixture/status/500"
        ),
        "{open}"
    );
    assert_eq!(event(&events, "ignored for this step")["outcome"], "ok");
    assert_eq!(
        event(&events, "ignored for this step")["detail"]["http_status"],
        503
    );
    assert_eq!(event(&events, "ignored for the run")["outcome"], "ok");
    assert_eq!(
        event(&events, "a 404 is not a server error")["outcome"],
        "ok"
    );
    assert_eq!(v["vars"]["submit_kind"], "system");
    let submit = error_of(&events, "the confirmation lets the form through");
    assert!(
        submit.starts_with("the portal answered 500 Internal Server Error on POST /cases/new"),
        "{submit}"
    );
}
