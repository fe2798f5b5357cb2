//! `clerk report`: the self-contained HTML report of a run, opened in real
//! headless Chromium (fantoccini) and checked through its DOM — the flagship
//! job's 36 entered and 4 rejected requests with the portal's reasons and
//! references, the typed values, the filter box, the audit chain head — and
//! that the page makes no network request. A second test tampers with a
//! failure screenshot and checks that the report shows the SHA-256 mismatch.

mod common;

use std::path::Path;

use common::chrome::Chrome;
use common::flagship;
use common::portal::Portal;
use common::{Backend, Workspace};
use serde_json::{Value, json};

fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// Every resource the page loaded that is not an inline `data:` URI.
const NETWORK_ENTRIES: &str = "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('data:'))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flagship_report_is_one_self_contained_file() {
    let portal = flagship::portal();
    let ws = flagship::workspace(Backend::Sqlite);
    let run = flagship::run(&ws, &portal);
    let run_id = run["id"].as_str().expect("run id").to_string();

    // Written atomically into a folder that does not exist yet.
    let out = ws.path().join("handover/reports/flagship.html");
    let r = ws
        .clerk(&[
            "report",
            &run_id,
            "--out",
            out.to_str().unwrap(),
            "--tz",
            "Europe/Brussels",
        ])
        .ok();
    assert!(r.stdout().contains("flagship.html"), "{}", r.stdout());
    let leftovers: Vec<_> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        leftovers,
        vec!["flagship.html".to_string()],
        "no temporary files left"
    );
    let size = std::fs::metadata(&out).unwrap().len();
    assert!(size < 5 * 1024 * 1024, "report is {size} bytes, over 5 MB");
    let html = std::fs::read_to_string(&out).unwrap();
    // Nothing that would be fetched from elsewhere.
    for needle in [
        "src=\"http",
        "href=\"http",
        "url(http",
        "<link",
        "@import",
        "src=\"//",
    ] {
        assert!(!html.contains(needle), "the report references `{needle}`");
    }
    assert!(
        html.contains("Content-Security-Policy"),
        "the report forbids other sources"
    );
    // No secret in the file.
    assert!(!html.contains(flagship::PORTAL_PASSWORD));

    let chrome = Chrome::start().await;
    let c = &chrome.client;
    c.goto(&file_url(&out)).await.unwrap();
    chrome
        .wait_for(
            "return document.readyState === 'complete'",
            "the report to load",
        )
        .await;

    // The header.
    let head = chrome
        .js(
            "return { status: document.getElementById('run-status').textContent, \
             text: document.querySelector('.run-head').innerText, \
             hash: document.getElementById('last-hash').textContent, \
             chain: document.getElementById('chain').className }",
        )
        .await;
    assert_eq!(head["status"], "succeeded_with_exceptions");
    let text = head["text"].as_str().unwrap();
    for needle in [
        run_id.as_str(),
        "playbooks/parking-permits.yaml",
        &format!("run:{run_id}"),
        "Europe/Brussels",
        "CET",
    ] {
        assert!(text.contains(needle), "header lacks `{needle}`:\n{text}");
    }
    let verify = ws.clerk(&["audit", "verify", "--json"]).ok().json();
    assert_eq!(
        head["hash"], verify["last_hash"],
        "the report names the chain head"
    );
    assert!(head["chain"].as_str().unwrap().contains("ok"), "{head}");
    let counts = chrome
        .js("return Object.fromEntries([...document.querySelectorAll('#counts td[data-state]')].map(td => [td.dataset.state, +td.textContent]))")
        .await;
    assert_eq!(counts["done"], 36, "{counts}");
    assert_eq!(counts["business_exception"], 4, "{counts}");

    // 36 entered rows, each with the reference the portal gave.
    let cases = portal.cases();
    assert_eq!(cases.len(), 36);
    let rows = chrome
        .js("return [...document.querySelectorAll('tbody.item')].map(b => ({ key: b.dataset.key, state: b.dataset.state, \
             reason: (b.querySelector('.reason') || {}).textContent || null, \
             out: Object.fromEntries([...b.querySelectorAll('.kv')].map(kv => [kv.dataset.field, kv.textContent.replace(kv.dataset.field, '').trim()])) }))")
        .await;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 40);
    let entered: Vec<&Value> = rows.iter().filter(|r| r["state"] == "done").collect();
    assert_eq!(entered.len(), 36);
    for r in &entered {
        assert_eq!(r["out"]["status"], "entered", "{r}");
        let case = cases
            .iter()
            .find(|c| c["request_id"] == r["key"])
            .unwrap_or_else(|| panic!("{} is not in the portal", r["key"]));
        assert_eq!(r["out"]["reference"], case["reference"], "{r}");
    }
    // 4 rejected rows with the portal's reasons.
    let rejected: Vec<&Value> = rows
        .iter()
        .filter(|r| r["state"] == "business_exception")
        .collect();
    assert_eq!(rejected.len(), 4);
    for (key, reason) in flagship::REJECTIONS {
        let r = rejected
            .iter()
            .find(|r| r["key"] == key)
            .unwrap_or_else(|| panic!("{key} is not among the rejected rows"));
        assert_eq!(r["reason"], reason, "{r}");
    }

    // PR-2026-0012: its reference, and every value typed for it.
    let case = cases
        .iter()
        .find(|c| c["request_id"] == "PR-2026-0012")
        .unwrap();
    let item = chrome
        .js("const b = document.getElementById('item-PR-2026-0012'); b.querySelector('details').open = true; \
             return { ref: b.querySelector('.kv[data-field=reference]').textContent, \
             typed: [...b.querySelectorAll('td.typed')].map(td => td.textContent).filter(t => t), \
             times: [...b.querySelectorAll('.actions td.time')].map(td => td.textContent), \
             locators: [...b.querySelectorAll('td.locator')].map(td => td.textContent) }")
        .await;
    assert!(
        item["ref"]
            .as_str()
            .unwrap()
            .contains(case["reference"].as_str().unwrap()),
        "{item}"
    );
    let typed: Vec<&str> = item["typed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for field in [
        "applicant_name",
        "street_address",
        "postcode",
        "vehicle_plate",
        "permit_type",
        "start_date",
        "email",
    ] {
        let v = case[field].as_str().unwrap();
        assert!(
            typed.contains(&v),
            "typed values of PR-2026-0012 lack {field} `{v}`: {typed:?}"
        );
    }
    let locators = item["locators"].to_string();
    assert!(locators.contains("label 'Vehicle plate'"), "{locators}");
    let times = item["times"].as_array().unwrap();
    assert!(!times.is_empty());
    for t in times {
        // Absolute, with the zone: 2026-03-01 02:30:05.123 CET (+01:00)
        let t = t.as_str().unwrap();
        assert!(
            t.len() > 20 && (t.contains("CET") || t.contains("CEST")),
            "{t}"
        );
    }

    // The filter box (light JS) narrows the rows by key or by state.
    let shown = chrome
        .js("const f = document.getElementById('filter'); f.value = '0012'; f.dispatchEvent(new Event('input')); \
             return [...document.querySelectorAll('tbody.item')].filter(b => !b.hidden).map(b => b.dataset.key)")
        .await;
    assert_eq!(shown, json!(["PR-2026-0012"]));
    let shown = chrome
        .js("const f = document.getElementById('filter'); f.value = 'business'; f.dispatchEvent(new Event('input')); \
             return [...document.querySelectorAll('tbody.item')].filter(b => !b.hidden).length")
        .await;
    assert_eq!(shown, 4);

    // What the report leaves out is said.
    let omitted = chrome
        .js("return document.getElementById('omitted').innerText")
        .await;
    assert!(
        omitted.as_str().unwrap().contains("not embedded")
            || omitted.as_str().unwrap().contains("Only screenshots"),
        "{omitted}"
    );

    // No network request: every resource the page loaded is inline.
    let net = chrome.js(NETWORK_ENTRIES).await;
    assert_eq!(net, json!([]), "the report made network requests");
    chrome.client.clone().close().await.ok();
}

/// A failed browser step's screenshot and page snapshot are embedded, their
/// SHA-256 checked against the audit event; a file changed afterwards is
/// shown as a mismatch, in red.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_is_embedded_and_a_tampered_screenshot_is_flagged() {
    let portal = Portal::start(&[]);
    let ws = Workspace::new(Backend::Sqlite);
    ws.write(
        "fails.yaml",
        "name: fails\ninputs:\n  portal: { type: string }\nsteps:\n  - browser.open: \"{{ inputs.portal }}/login\"\n  - name: Wait for something that never comes\n    browser.wait_for: { text: \"Never shown\", timeout: 1s }\n",
    );
    let r = ws.clerk(&[
        "run",
        "fails.yaml",
        "--input",
        &format!("portal={}", portal.url),
        "--json",
    ]);
    let v = r.json();
    assert_eq!(v["status"], "failed", "{}", r.stderr());
    let run_id = v["id"].as_str().unwrap().to_string();
    let artifacts: Vec<String> = v["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let png = artifacts
        .iter()
        .find(|a| a.ends_with(".png"))
        .expect("a failure screenshot");

    let first = ws.path().join("first.html");
    ws.clerk(&["report", &run_id, "--out", first.to_str().unwrap()])
        .ok();
    // Tamper with the screenshot after the fact.
    let mut bytes = std::fs::read(ws.path().join(png)).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(ws.path().join(png), &bytes).unwrap();
    let second = ws.path().join("second.html");
    ws.clerk(&["report", &run_id, "--out", second.to_str().unwrap()])
        .ok();

    let chrome = Chrome::start().await;
    chrome.client.goto(&file_url(&first)).await.unwrap();
    let before = chrome
        .js(
            "return { checks: [...document.querySelectorAll('.artifact')].map(a => a.className), \
             images: [...document.querySelectorAll('.shot img')].map(i => i.src.slice(0, 22)), \
             snapshots: document.querySelectorAll('iframe[srcdoc]').length, \
             status: document.getElementById('run-status').textContent }",
        )
        .await;
    assert_eq!(before["status"], "failed");
    assert_eq!(
        before["checks"],
        json!(["artifact chk-ok", "artifact chk-ok"]),
        "{before}"
    );
    assert_eq!(
        before["images"],
        json!(["data:image/png;base64,"]),
        "{before}"
    );
    assert_eq!(before["snapshots"], 1, "{before}");
    // The image is a thumbnail that expands on a click (no script needed).
    let widths = chrome
        .js("const i = document.querySelector('.shot img'); const w = i.getBoundingClientRect().width; \
             i.click(); return [w, i.getBoundingClientRect().width]")
        .await;
    assert!(
        widths[0].as_f64().unwrap() <= 240.0 && widths[1].as_f64().unwrap() > 240.0,
        "{widths}"
    );
    let net = chrome.js(NETWORK_ENTRIES).await;
    assert_eq!(net, json!([]), "the report made network requests");

    chrome.client.goto(&file_url(&second)).await.unwrap();
    let after = chrome
        .js("const a = document.querySelector('.artifact.chk-mismatch'); \
             return a ? { text: a.innerText, color: getComputedStyle(a.querySelector('.sha')).color } : null")
        .await;
    assert!(!after.is_null(), "the tampered screenshot is not flagged");
    assert!(
        after["text"].as_str().unwrap().contains("SHA-256 MISMATCH"),
        "{after}"
    );
    assert_eq!(
        after["color"], "rgb(198, 40, 40)",
        "the mismatch is shown in red"
    );
}

/// Bad input gets a clear error, not a panic.
#[test]
fn report_of_an_unknown_run_or_zone_is_a_usage_error() {
    let ws = Workspace::new(Backend::Sqlite);
    let r = ws.clerk(&["report", "01NOSUCHRUN0000000000000000"]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(
        r.stderr().contains("no run `01NOSUCHRUN0000000000000000`"),
        "{}",
        r.stderr()
    );
    let r = ws.clerk(&["report", "x", "--tz", "Mars/Olympus"]);
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().contains("not an IANA time zone"),
        "{}",
        r.stderr()
    );
}
