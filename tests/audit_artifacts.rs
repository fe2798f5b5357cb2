//! Failure evidence of a retried loop item, with real Chromium: each attempt
//! keeps its own screenshot and page HTML (`…-attempt1-…`, `…-attempt2-…`,
//! never overwritten), every file is named with its SHA-256 by its event, and
//! `clerk audit verify` re-hashes them — and names the one changed afterwards.

mod common;

use common::{Backend, Workspace};
use serde_json::Value;

const PLAYBOOK: &str = r##"name: retry-evidence
steps:
  - browser.open: "data:text/html,<h1>Case form</h1>"
  - name: Enter each case
    for_each: [1]
    as: n
    retry: { attempts: 2, delay: 0s }
    on_error: continue
    steps:
      - name: Submit
        browser.click: { css: "#missing-submit" }
"##;

#[test]
fn retried_item_keeps_each_attempts_evidence_and_verify_rehashes_it() {
    let ws = Workspace::new(Backend::Sqlite);
    ws.write("playbooks/retry.yaml", PLAYBOOK);
    let run = ws.clerk_env(
        &["run", "playbooks/retry.yaml", "--json"],
        &[("CLERK_BROWSER_TIMEOUT", "1s")],
    );
    let out = run.json();
    let run_id = out["id"].as_str().expect("run id").to_string();

    // The two failed clicks (one per item attempt), each with its evidence.
    let export = ws
        .clerk(&["audit", "export", "--run", &run_id])
        .ok()
        .stdout();
    let clicks: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["action"] == "browser.click")
        .collect();
    assert_eq!(clicks.len(), 2, "{export}");
    let mut paths = Vec::new();
    for (i, e) in clicks.iter().enumerate() {
        assert_eq!(e["outcome"], "failed");
        let arts = e["detail"]["artifacts"].as_array().expect("artifacts");
        assert_eq!(arts.len(), 2, "screenshot and HTML: {e}");
        for a in arts {
            let p = a["path"].as_str().unwrap().to_string();
            let want = format!("step-2-item1-1-attempt{}-failure.", i + 1);
            assert!(p.contains(&want), "{p} should contain {want}");
            let bytes = std::fs::read(ws.path().join(&p)).unwrap();
            assert_eq!(
                clerk::fsutil::sha256_hex(&bytes),
                a["sha256"].as_str().unwrap(),
                "{p} is the file its event names"
            );
            paths.push(p);
        }
    }
    let distinct: std::collections::BTreeSet<_> = paths.iter().collect();
    assert_eq!(distinct.len(), 4, "no name reused: {paths:?}");

    let ok = ws.clerk(&["audit", "verify"]);
    assert_eq!(ok.code(), 0, "{}", ok.stdout());
    assert!(ok.stdout().contains("4 artifacts"), "{}", ok.stdout());

    // The first attempt's screenshot changed afterwards: named by event and path.
    let first = ws.path().join(&paths[0]);
    let mut bytes = std::fs::read(&first).unwrap();
    bytes.push(0);
    std::fs::write(&first, bytes).unwrap();
    let bad = ws.clerk(&["audit", "verify"]);
    assert_eq!(bad.code(), 1);
    let id = clicks[0]["id"].as_i64().unwrap();
    assert!(
        bad.stdout().contains(&format!(
            "tampered: event {id}: artifact {} has changed",
            paths[0]
        )),
        "{}",
        bad.stdout()
    );
    assert_eq!(ws.clerk(&["audit", "verify", "--no-artifacts"]).code(), 0);
}
