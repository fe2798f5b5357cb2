//! `browser.fill_form` and "submit and wait for the answer" (`browser.click`
//! with `dialog` + `wait_for`, `browser.open` with `wait_for`), through real
//! `clerk` runs, real headless Chromium and the real `fixtures/legacy-portal`
//! in both its styles (2004: `<label>`s; 2003: frames, caption cells,
//! bare-text radios, the reference only in an `alert()`).
//!
//! What is checked: the portal's stored case field by field (the values
//! took), one error naming every bad field at once with its kind, the audit
//! event listing each field and value, secrets masked per field.

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

    fn run(&self, playbook: &str, inputs: &[(&str, &str)], env: &[(&str, &str)]) -> Run {
        let mut c = self.ws.cmd();
        c.args(["run", playbook, "--json"]);
        for (k, v) in inputs {
            c.arg("--input").arg(format!("{k}={v}"));
        }
        for (k, v) in env {
            c.env(k, v);
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

    /// Runs a playbook; returns its JSON and its events.
    #[track_caller]
    fn go(
        &self,
        name: &str,
        yaml: &str,
        inputs: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> (Value, Vec<Value>) {
        self.ws.write(name, yaml);
        let r = self.run(name, inputs, env);
        let v = r.json();
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

const PASSWORD: &str = "Pw-91c2-FillForm";

/// Signs in, enters one case with one `fill_form` and one click that
/// confirms, waits and reads the answer; then the same form again with the
/// same request id (the portal refuses it), answered by the same click.
const ENTER: &str = r#"name: enter
inputs:
  portal: { type: string }
steps:
  - name: sign in
    browser.open:
      url: "{{ inputs.portal }}/login"
      wait_for: { sign_in: { label: "User name" } }
  - name: credentials
    browser.fill_form:
      fields:
        User name: demo
        Password: "{{ secrets.portal_password }}"
  - name: submit sign-in
    browser.click:
      text: Sign in
      wait_for: { signed_in: { text: "Sign out" } }
  - name: open the form
    browser.open:
      url: "{{ inputs.portal }}/cases/new"
      wait_for:
        form: { label: "Request id" }
        sign_in: { label: "User name" }
    save_as: landed
  - name: the form
    browser.fill_form:
      fields:
        Request id: FF-1
        Applicant name: Ann Example
        Street address: 1 Main Street
        Postcode: 1000
        Vehicle plate: AB-123
        Permit type: { select: Visitor }
        Start date: "2026-03-01"
        Email: ann@example.org
        Contact preference: { choose: By post }
        Notes: "Entered with fill_form"
        Details confirmed: true
  - name: submit
    browser.click:
      text: Submit case
      dialog: accept
      wait_for:
        entered: { css: ".case-ref" }
        alerted: { dialog: true, accept: true }
        rejected: { css: "span.error, font[color=red]" }
    save_as: reply
  - name: open the form again
    browser.open:
      url: "{{ inputs.portal }}/cases/new"
      wait_for: { form: { label: "Request id" } }
  - name: the same request again
    browser.fill_form:
      fields:
        Request id: FF-1
        Applicant name: Ann Example
        Street address: 1 Main Street
        Postcode: 1000
        Vehicle plate: AB-123
        Permit type: { select: visitor }
        Start date: "2026-03-01"
        Email: ann@example.org
        Details confirmed: true
  - name: submit again
    browser.click:
      text: Submit case
      dialog: accept
      wait_for:
        entered: { css: ".case-ref" }
        alerted: { dialog: true, accept: true }
        rejected: { css: "span.error, font[color=red]" }
    save_as: again
"#;

fn enter_on(style: &str) {
    let portal = Portal::start(&["--style", style, "--password", PASSWORD]);
    let b = Bench::new();
    let (v, events) = b.go(
        "enter.yaml",
        ENTER,
        &[("portal", &portal.url)],
        &[("CLERK_SECRET_PORTAL_PASSWORD", PASSWORD)],
    );
    assert_eq!(v["status"], "succeeded", "{style}: {v:#}");
    let vars = &v["vars"];
    assert_eq!(
        vars["landed"]["matched"], "form",
        "{style}: {}",
        vars["landed"]
    );

    // The values took: the portal stored them, field by field.
    let cases = portal.cases();
    assert_eq!(cases.len(), 1, "{style}: {cases:#?}");
    let case = &cases[0];
    for (field, want) in [
        ("request_id", "FF-1"),
        ("applicant_name", "Ann Example"),
        ("street_address", "1 Main Street"),
        ("postcode", "1000"),
        ("vehicle_plate", "AB-123"),
        ("permit_type", "Visitor"),
        ("start_date", "2026-03-01"),
        ("email", "ann@example.org"),
        ("notes", "Entered with fill_form"),
        ("contact_preference", "Post"),
    ] {
        assert_eq!(case[field].as_str(), Some(want), "{style}: {field}: {case}");
    }
    assert_eq!(case["details_confirmed"], true, "{style}");

    // The click read the answer: the reference (page or alert), then the refusal.
    let reference = case["reference"].as_str().expect("reference");
    let reply = &vars["reply"];
    match style {
        "2004" => assert_eq!(reply["matched"], "entered", "{reply}"),
        _ => assert_eq!(reply["matched"], "alerted", "{reply}"),
    }
    assert!(
        reply["text"].as_str().unwrap_or("").contains(reference),
        "{style}: {reply}"
    );
    let again = &vars["again"];
    assert_eq!(again["matched"], "rejected", "{style}: {again}");
    assert!(
        again["texts"]
            .to_string()
            .contains("A case with this request id already exists"),
        "{style}: {again}"
    );

    // The audit lists every field and value; the password is masked.
    let form = event(&events, "the form");
    assert_eq!(form["action"], "browser.fill_form");
    let target = form["target"].as_str().unwrap_or("");
    assert!(
        target.starts_with("form: Request id, Applicant name"),
        "{target}"
    );
    let fields = form["detail"]["fields"].as_array().expect("fields");
    assert_eq!(fields.len(), 11, "{fields:#?}");
    let line = |label: &str| {
        fields
            .iter()
            .find(|f| f["label"] == label)
            .unwrap_or_else(|| panic!("{label} not in {fields:#?}"))
    };
    assert_eq!(line("Vehicle plate")["value"], "AB-123");
    assert_eq!(line("Vehicle plate")["outcome"], "ok");
    assert_eq!(line("Permit type")["kind"], "select");
    assert_eq!(line("Details confirmed")["value"], true);
    assert_eq!(line("Contact preference")["value"], "By post");
    if style == "2003" {
        assert_eq!(line("Postcode")["frame"], "main", "{fields:#?}");
    }
    let credentials = event(&events, "credentials");
    let cred = credentials["detail"]["fields"].as_array().expect("fields");
    assert_eq!(cred[0]["value"], "demo");
    assert_eq!(cred[1]["value"], "***", "{credentials}");
    assert_eq!(credentials["detail"]["args"]["fields"]["Password"], "***");
    assert_eq!(credentials["detail"]["args"]["fields"]["User name"], "demo");
    let submit = event(&events, "submit");
    assert_eq!(submit["detail"]["dialog"], "Submit this case?", "{submit}");
    assert!(
        submit["detail"]["value"].to_string().contains(reference),
        "the reference read is in the audit: {submit}"
    );
    let all = serde_json::to_string(&events).unwrap_or_default();
    assert!(!all.contains(PASSWORD), "the password leaked");
    let verify = b.ws.clerk(&["audit", "verify"]);
    assert_eq!(verify.code(), 0, "{}", verify.stdout());
}

#[test]
fn fill_form_enters_a_case_on_the_2004_portal() {
    enter_on("2004");
}

#[test]
fn fill_form_enters_a_case_on_the_2003_portal() {
    enter_on("2003");
}

/// A form with every kind of field, a page script that undoes an earlier
/// field when a later one changes, and a radio group captioned by a table cell.
const PAGE: &str = r#"<!DOCTYPE html>
<html><head><title>Every kind</title></head><body>
<form onsubmit="return false">
<p><label for="n">Name</label> <input id="n"></p>
<p><label for="t">Type</label> <select id="t"><option value="">--</option><option value="R">Resident</option><option value="V">Visitor</option><option value="X" disabled>Expired</option></select></p>
<p><label><input type="checkbox" id="ok"> I agree</label></p>
<p><label for="ro">Reference</label> <input id="ro" readonly value="fixed"></p>
<p><label for="a">Amount</label> <input id="a" onchange="document.getElementById('n').value = ''"></p>
<table><tr><td>Delivery:</td><td><input type="radio" name="d" value="mail"> Mail <input type="radio" name="d" value="pickup"> Pick-up</td></tr></table>
</form>
<form id="other"><label for="n2">Name</label> <input id="n2"></form>
</body></html>
"#;

#[test]
fn fill_form_reports_every_field_problem_at_once() {
    let b = Bench::new();
    let page = b.ws.write("page.html", PAGE);
    let url = format!("file://{}", page.display());
    let (v, events) = b.go(
        "kinds.yaml",
        r#"name: kinds
inputs:
  page: { type: string }
steps:
  - browser.open: "{{ inputs.page }}"
  - name: every kind, within the first form
    browser.fill_form:
      within: { css: "form:not(#other)" }
      fields:
        Name: Ann
        Type: { select: Visitor }
        I agree: true
        Delivery: { choose: Pick-up }
  - name: read back
    browser.execute_script:
      script: |
        var d = document.querySelector('input[name=d]:checked');
        return { n: document.getElementById('n').value, t: document.getElementById('t').value,
                 ok: document.getElementById('ok').checked, d: d && d.value,
                 n2: document.getElementById('n2').value };
    save_as: values
  - name: untick
    browser.fill_form: { fields: { I agree: false } }
  - name: many problems
    browser.fill_form:
      timeout: 2s
      within: { css: "form:not(#other)" }
      fields:
        Nmae: x
        Type: { select: Diplomat }
        I agree: "yes"
        Reference: other
        Delivery: { choose: Drone }
    on_error:
      - set: { kind: "{{ error.kind }}" }
  - name: business only
    browser.fill_form:
      within: { css: "form:not(#other)" }
      fields:
        Type: { select: Expired }
        Reference: other
    on_error:
      - set: { business_kind: "{{ error.kind }}" }
  - name: undone by the page
    browser.fill_form:
      within: { css: "form:not(#other)" }
      fields:
        Name: Bob
        Amount: 12
    on_error:
      - set: { undone_kind: "{{ error.kind }}" }
  - name: two forms without within
    browser.fill_form: { fields: { Name: Zed }, timeout: 1s }
    on_error: continue
"#,
        &[("page", &url)],
        &[],
    );
    assert_eq!(v["status"], "succeeded", "{v:#}");
    let vars = &v["vars"];
    let values = &vars["values"];
    assert_eq!(values["n"], "Ann", "{values}");
    assert_eq!(values["t"], "V", "{values}");
    assert_eq!(values["ok"], true, "{values}");
    assert_eq!(values["d"], "pickup", "{values}");
    assert_eq!(values["n2"], "", "within kept to the first form: {values}");
    assert_eq!(event(&events, "untick")["outcome"], "ok");

    let many = event(&events, "many problems");
    let error = many["error"].as_str().expect("error");
    assert!(
        error.starts_with("5 of 5 fields could not be filled: "),
        "{error}"
    );
    for part in [
        "no element matches label 'Nmae'",
        "(did you mean 'Name'?)",
        "no option 'Diplomat'",
        "options: --, Resident, Visitor, Expired",
        "is a checkbox: write true or false",
        "label 'Reference'",
        "is read-only",
        "no choice 'Drone' in the radio buttons labelled 'Delivery' (choices: mail ('Mail'), pickup ('Pick-up'))",
    ] {
        assert!(error.contains(part), "missing {part:?} in: {error}");
    }
    // A label typo and text for a checkbox are the playbook's mistakes (a
    // usage error, which `error.kind` in a playbook shows as not business).
    assert_ne!(vars["kind"], "business");
    let took = many["duration_ms"].as_i64().unwrap_or(i64::MAX);
    eprintln!("five problems reported after {took} ms (timeout 2 s)");
    let fields = many["detail"]["fields"].as_array().expect("fields");
    assert!(
        fields.iter().all(|f| f["outcome"] == "failed"),
        "{fields:#?}"
    );

    let business = event(&events, "business only");
    let error = business["error"].as_str().expect("error");
    assert!(error.contains("option 'Expired'"), "{error}");
    assert!(error.contains("is disabled"), "{error}");
    assert!(error.contains("is read-only"), "{error}");
    assert_eq!(vars["business_kind"], "business");
    // Business problems do not wait for the timeout (10 s by default).
    assert!(
        business["duration_ms"].as_i64().unwrap_or(i64::MAX) < 10_000,
        "{business}"
    );

    let undone = event(&events, "undone by the page");
    let error = undone["error"].as_str().expect("error");
    assert!(
        error.contains("label 'Name' did not keep its value: the page changed it to \"\""),
        "{error}"
    );
    assert_eq!(vars["undone_kind"], "business");

    let two = event(&events, "two forms without within");
    let error = two["error"].as_str().expect("error");
    assert!(error.contains("2 elements match label 'Name'"), "{error}");
}

#[test]
fn fill_form_masks_secrets_per_field_and_all_of_a_sensitive_step() {
    let b = Bench::new();
    let page = b.ws.write("page.html", PAGE);
    let url = format!("file://{}", page.display());
    let secret = "S3cr3t-Value-77";
    let (v, events) = b.go(
        "mask.yaml",
        r#"name: mask
inputs:
  page: { type: string }
steps:
  - browser.open: "{{ inputs.page }}"
  - name: one secret field
    browser.fill_form:
      within: { css: "form:not(#other)" }
      fields:
        Name: "{{ secrets.name }}"
        Type: { select: Visitor }
  - name: derived from the secret
    browser.fill_form:
      within: { css: "form:not(#other)" }
      fields:
        Name: "{{ secrets.name | lower }}"
  - name: sensitive step
    sensitive: true
    browser.fill_form:
      within: { css: "form:not(#other)" }
      fields:
        Name: Public Name
"#,
        &[("page", &url)],
        &[("CLERK_SECRET_NAME", secret)],
    );
    assert_eq!(v["status"], "succeeded", "{v:#}");
    let one = event(&events, "one secret field");
    assert_eq!(one["detail"]["fields"][0]["value"], "***");
    assert_eq!(one["detail"]["fields"][1]["value"], "Visitor");
    assert_eq!(one["detail"]["args"]["fields"]["Type"]["select"], "Visitor");
    assert_eq!(one["detail"]["args"]["fields"]["Name"], "***");
    let derived = event(&events, "derived from the secret");
    assert_eq!(derived["detail"]["fields"][0]["value"], "***");
    let sensitive = event(&events, "sensitive step");
    assert_eq!(sensitive["detail"]["fields"][0]["value"], "***");
    let all = serde_json::to_string(&events).unwrap_or_default();
    assert!(!all.contains(secret), "the secret leaked");
    assert!(
        !all.contains(&secret.to_lowercase()),
        "the derived secret leaked"
    );
    assert!(
        !all.contains("Public Name"),
        "a sensitive step's value leaked"
    );
}
