//! Work items for people (`tests/items_cli.rs`), through the real `clerk` binary on SQLite and
//! PostgreSQL with the example `playbooks/work-items.yaml`: the run's item
//! counts and `succeeded_with_exceptions`, `clerk items` (filters, JSON),
//! `clerk items retry` (audited with the OS user), `clerk audit trace KEY`
//! across two runs, and `clerk runs resume` (done items and `once` steps
//! skipped, a changed playbook refused unless `--force-changed`).

mod common;

use std::path::PathBuf;

use common::{Backend, Workspace};
use serde_json::Value;

fn workspace(backend: Backend) -> Workspace {
    let ws = Workspace::new(backend);
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("playbooks/work-items.yaml"),
    )
    .expect("read the example");
    ws.write("playbooks/work-items.yaml", &text);
    ws
}

fn run_json(ws: &Workspace, args: &[&str]) -> (i32, Value) {
    let r = ws.clerk(args);
    let code = r.code();
    (code, r.json())
}

fn items(ws: &Workspace, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["items"];
    all.extend_from_slice(args);
    all.push("--json");
    ws.clerk(&all)
        .ok()
        .json()
        .as_array()
        .cloned()
        .expect("an array of items")
}

fn states(list: &[Value]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = list
        .iter()
        .map(|i| {
            (
                i["key"].as_str().unwrap_or("").to_string(),
                i["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn items_and_trace(backend: Backend) {
    let ws = workspace(backend);
    let (code, run) = run_json(&ws, &["run", "playbooks/work-items.yaml", "--json"]);
    assert_eq!(code, 0, "{run:#}");
    assert_eq!(run["status"], "succeeded_with_exceptions", "{run:#}");
    assert_eq!(run["items"]["done"], 2, "{run:#}");
    assert_eq!(run["items"]["business_exception"], 1, "{run:#}");
    let run_id = run["id"].as_str().expect("id").to_string();
    let lineage = run["lineage"].as_str().expect("lineage").to_string();
    assert_eq!(lineage, format!("run:{run_id}"));

    // runs list / show carry the status and the counts.
    let list = ws.clerk(&["runs", "list", "--json"]).ok().json();
    let row = &list[0];
    assert_eq!(row["status"], "succeeded_with_exceptions");
    assert_eq!(row["items"]["done"], 2, "{row:#}");
    assert_eq!(row["items"]["business_exception"], 1, "{row:#}");
    let shown = ws.clerk(&["runs", "show", &run_id]).ok().stdout();
    assert!(shown.contains("succeeded_with_exceptions"), "{shown}");
    assert!(shown.contains("1 business_exception"), "{shown}");

    // clerk items and its filters.
    let all = items(&ws, &[]);
    assert_eq!(
        states(&all),
        vec![
            ("ORD-1".into(), "done".into()),
            ("ORD-2".into(), "business_exception".into()),
            ("ORD-3".into(), "done".into()),
        ]
    );
    let exc = items(&ws, &["--state", "business_exception"]);
    assert_eq!(exc.len(), 1);
    assert!(
        exc[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("ORD-2 of Peeters has no amount")),
        "{exc:#?}"
    );
    assert_eq!(items(&ws, &["--key", "ORD-3"]).len(), 1);
    assert_eq!(items(&ws, &["--run", &run_id]).len(), 3);
    assert_eq!(items(&ws, &["--lineage", &lineage]).len(), 3);
    assert!(items(&ws, &["--lineage", "run:nope"]).is_empty());
    let table = ws.clerk(&["items"]).ok().stdout();
    assert!(
        table.contains("ORD-2") && table.contains("business_exception"),
        "{table}"
    );
    let bad = ws.clerk(&["items", "--state", "in-doubt"]);
    assert_eq!(bad.code(), 2);
    assert!(
        bad.stderr().contains("did you mean `in_doubt`"),
        "{}",
        bad.stderr()
    );

    // A second, separate run (its own lineage): trace shows both runs, for
    // that key only, with absolute times.
    let (code, second) = run_json(&ws, &["run", "playbooks/work-items.yaml", "--json"]);
    assert_eq!(code, 0);
    let second_id = second["id"].as_str().expect("id").to_string();
    let trace = ws.clerk(&["audit", "trace", "ORD-1", "--json"]).ok().json();
    let events = trace.as_array().expect("events");
    let runs: std::collections::BTreeSet<&str> =
        events.iter().filter_map(|e| e["run_id"].as_str()).collect();
    assert_eq!(
        runs,
        [run_id.as_str(), second_id.as_str()].into_iter().collect()
    );
    assert!(events.iter().all(|e| e["item_key"] == "ORD-1"), "{trace:#}");
    assert!(events.iter().any(|e| e["kind"] == "item.started"));
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "file.write" && e["kind"] == "action"),
        "the actions inside the item carry its key: {trace:#}"
    );
    let ids: Vec<i64> = events.iter().filter_map(|e| e["id"].as_i64()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "chain order: {ids:?}");
    let text = ws.clerk(&["audit", "trace", "ORD-1"]).ok().stdout();
    assert!(
        text.contains(&run_id) && text.contains(&second_id),
        "{text}"
    );
    assert!(text.contains(" UTC"), "{text}");
    assert!(!text.contains("ORD-3"), "{text}");
    let none = ws.clerk(&["audit", "trace", "ORD-404"]);
    assert_eq!(none.code(), 1);
    assert!(none.stderr().contains("no audit events for item `ORD-404`"));

    // clerk items retry: only business / in-doubt items, audited with the user.
    let refused = ws.clerk(&["items", "retry", "ORD-1"]);
    assert_eq!(refused.code(), 1, "{}", refused.stdout());
    assert!(
        refused
            .stdout()
            .contains("only business_exception and in_doubt")
    );
    let retried = ws.clerk_env(
        &["items", "retry", "ORD-2", "--lineage", &lineage],
        &[("USER", "maria")],
    );
    assert_eq!(
        retried.code(),
        0,
        "{}{}",
        retried.stdout(),
        retried.stderr()
    );
    assert!(
        retried.stdout().contains("requeued ORD-2"),
        "{}",
        retried.stdout()
    );
    assert_eq!(
        states(&items(&ws, &["--lineage", &lineage, "--key", "ORD-2"])),
        vec![("ORD-2".into(), "pending".into())]
    );
    let trace = ws.clerk(&["audit", "trace", "ORD-2", "--json"]).ok().json();
    let requeued = trace
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["kind"] == "admin.item_requeued")
        .cloned()
        .expect("the requeue is audited");
    assert_eq!(requeued["actor"], "maria");
    assert_eq!(ws.clerk(&["audit", "verify"]).code(), 0);
}

fn resume(backend: Backend) {
    let ws = workspace(backend);
    ws.write("out/work-items/STOP", "stop");
    let (code, first) = run_json(&ws, &["run", "playbooks/work-items.yaml", "--json"]);
    assert_eq!(code, 1, "{first:#}");
    assert_eq!(first["status"], "failed");
    let first_id = first["id"].as_str().expect("id").to_string();
    let outbox = || {
        std::fs::read_dir(ws.path().join(".clerk/outbox"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(outbox(), 1, "the mail went out once");

    // Still failing: refused? No — resumable; it fails again at the stop switch.
    let (code, second) = run_json(&ws, &["runs", "resume", &first_id, "--json"]);
    assert_eq!(code, 1, "{second:#}");
    assert_eq!(second["resumed_from"], first_id.as_str());
    assert_eq!(second["lineage"], first["lineage"]);
    assert_eq!(
        second["items"]["skipped"], 2,
        "done items skipped: {second:#}"
    );
    let second_id = second["id"].as_str().expect("id").to_string();
    // A run is continued once: resuming the first again is refused.
    let again = ws.clerk(&["runs", "resume", &first_id]);
    assert_eq!(again.code(), 2, "{}", again.stdout());
    assert!(
        again.stderr().contains("already resumed"),
        "{}",
        again.stderr()
    );

    // A changed playbook is refused, naming the step, unless forced.
    let path = ws.path().join("playbooks/work-items.yaml");
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(
        &path,
        text.replace("orders booked\"", "orders booked today\""),
    )
    .expect("write");
    let changed = ws.clerk(&["runs", "resume", &second_id]);
    assert_eq!(changed.code(), 2, "{}", changed.stdout());
    assert!(
        changed.stderr().contains("tell-the-team"),
        "names the changed step: {}",
        changed.stderr()
    );
    std::fs::remove_file(ws.path().join("out/work-items/STOP")).expect("rm STOP");
    let (code, third) = run_json(
        &ws,
        &["runs", "resume", &second_id, "--force-changed", "--json"],
    );
    assert_eq!(code, 0, "{third:#}");
    assert_eq!(third["status"], "succeeded_with_exceptions");
    assert_eq!(
        third["vars"]["booked_orders"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(outbox(), 1, "the once step did not send again");
    let text = ws.clerk(&["runs", "resume", &second_id]);
    assert_eq!(text.code(), 2);

    // The human output of `runs resume` reads like `clerk run`.
    let show = ws
        .clerk(&["runs", "show", third["id"].as_str().expect("id")])
        .ok();
    assert!(show.stdout().contains(&second_id), "{}", show.stdout());
    assert_eq!(ws.clerk(&["audit", "verify"]).code(), 0);
}

#[test]
fn items_retry_and_trace_on_sqlite() {
    items_and_trace(Backend::Sqlite);
}

#[test]
fn items_retry_and_trace_on_postgres() {
    items_and_trace(Backend::Postgres);
}

#[test]
fn runs_resume_skips_done_items_and_once_steps_on_sqlite() {
    resume(Backend::Sqlite);
}

#[test]
fn runs_resume_skips_done_items_and_once_steps_on_postgres() {
    resume(Backend::Postgres);
}
