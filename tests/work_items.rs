//! Durable work items (issue 10): the real `clerk` binary, killed with
//! SIGKILL while an item is half done, then `clerk runs resume` — every side
//! effect exactly once, in-doubt items verified or set aside, outputs
//! restored in order, `once` steps skipped, a changed playbook refused —
//! plus the store's guarded transitions, on SQLite and PostgreSQL.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use clerk::audit::NewEvent;
use clerk::store::{
    FollowUpRun, ItemChange, ItemId, ItemState, NewRun, QueuedRun, RunChange, SchedBatch, Store,
    StoreError,
};
use common::{Backend, Workspace, query};
use serde_json::{Value, json};

/// A loop whose items append a line to a CSV (the side effect to count).
/// An item whose `hold-<id>` file exists waits a minute — before or after its
/// append, by input — so the test can kill the run while it is in progress.
/// `stop-after-loop` makes the run fail after the loop (to resume it then).
const ITEMS: &str = r#"name: items
inputs:
  where: { type: string, default: after }
steps:
  - name: Load
    set:
      rows: [{ id: A1 }, { id: A2 }, { id: A3 }, { id: A4 }]
  - name: Setup
    once: true
    sheet.append: { path: out/once.csv, rows: [{ event: setup }] }
    save_as: setup
  - name: Enter each
    for_each: "{{ rows }}"
    as: row
    checkpoint: "{{ row.id }}"
    steps:
      - file.exists: "hold-{{ row.id }}"
        save_as: hold
      - wait: 60s
        if: "{{ hold and inputs.where == 'before' }}"
      - sheet.append: { path: out/entered.csv, rows: [{ id: "{{ row.id }}" }] }
      - wait: 60s
        if: "{{ hold and inputs.where == 'after' }}"
    output: "{{ row.id }}-ok"
    save_as: results
  - file.exists: stop-after-loop
    save_as: stop
  - fail: stopped on purpose
    if: "{{ stop }}"
  - file.write: { path: out/results.txt, text: "{{ results | join(',') }}" }
"#;

/// The same loop with a `verify:` block that looks the item up in the CSV.
fn with_verify() -> String {
    ITEMS.replace(
        "    output: \"{{ row.id }}-ok\"\n",
        "    verify:\n      steps:\n        - file.read: out/entered.csv\n          save_as: sofar\n      output: \"{{ (row.id ~ '-found') if row.id in sofar.lines else none }}\"\n    output: \"{{ row.id }}-ok\"\n",
    )
}

fn spawn(ws: &Workspace, args: &[&str]) -> Child {
    let mut c = ws.cmd();
    c.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    c.spawn().expect("spawn clerk")
}

/// `q`'s first row, or `None` while the store or its tables do not exist yet.
fn try_query(ws: &Workspace, q: &str) -> Option<String> {
    let out = match &ws.db_url {
        Some(url) => std::process::Command::new("psql")
            .arg(url)
            .args(["-qAt", "-v", "ON_ERROR_STOP=1", "-c", q])
            .output(),
        None => {
            let db = ws.path().join(".clerk/clerk.db");
            if !db.exists() {
                return None;
            }
            std::process::Command::new("sqlite3")
                .arg(db)
                .arg(q)
                .output()
        }
    }
    .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_string)
}

/// Waits (deadline 120 s: the test machines are shared) until `q` returns `want`.
#[track_caller]
fn wait_for(ws: &Workspace, q: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = try_query(ws, q);
        if got.as_deref() == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for `{q}` = {want}, got {got:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn csv_ids(ws: &Workspace, rel: &str) -> Vec<String> {
    ws.read(rel).lines().skip(1).map(str::to_string).collect()
}

/// The only run row id (the killed run).
fn single_run(ws: &Workspace) -> String {
    let ids = query(ws, "SELECT id FROM runs");
    assert_eq!(ids.len(), 1, "{ids:?}");
    ids[0].clone()
}

/// Starts `items.yaml` with A2 held, waits until A2 is in progress (and, with
/// `where = after`, appended), kills the process with SIGKILL, and lets the
/// dead-process sweep mark the run interrupted. Returns the run id.
fn run_and_kill(ws: &Workspace, where_: &str) -> String {
    ws.write("hold-A2", "");
    let mut child = spawn(
        ws,
        &["run", "items.yaml", "--input", &format!("where={where_}")],
    );
    wait_for(
        ws,
        "SELECT state FROM work_items WHERE item_key = 'A2'",
        "in_progress",
    );
    if where_ == "after" {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !ws.path().join("out/entered.csv").exists()
            || !csv_ids(ws, "out/entered.csv").contains(&"A2".to_string())
        {
            assert!(Instant::now() < deadline, "A2 was never appended");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    std::fs::remove_file(ws.path().join("hold-A2")).unwrap();
    let id = single_run(ws);
    assert_eq!(
        query(ws, &format!("SELECT status FROM runs WHERE id = '{id}'")),
        ["running"]
    );
    // Any clerk command that opens the store marks a run whose process is
    // provably gone `interrupted`, with its audit event (issue 16).
    ws.clerk(&["runs", "list"]).ok();
    assert_eq!(
        query(ws, &format!("SELECT status FROM runs WHERE id = '{id}'")),
        ["interrupted"]
    );
    id
}

fn resume(ws: &Workspace, id: &str, extra: &[&str]) -> common::Run {
    let mut args = vec!["runs", "resume", id, "--json"];
    args.extend_from_slice(extra);
    ws.clerk(&args)
}

fn item_state(ws: &Workspace, key: &str) -> String {
    query(
        ws,
        &format!("SELECT state FROM work_items WHERE item_key = '{key}'"),
    )
    .join(",")
}

// ---------------------------------------------------------------- kill -9

fn killed_item_without_verify_is_in_doubt_and_never_redone(backend: Backend) {
    let ws = Workspace::new(backend);
    ws.write("items.yaml", ITEMS);
    let first = run_and_kill(&ws, "after");
    assert_eq!(csv_ids(&ws, "out/entered.csv"), ["A1", "A2"]);

    let v = resume(&ws, &first, &[]).ok().json();
    assert_eq!(v["status"], "succeeded_with_exceptions", "{v}");
    assert_eq!(v["resumed_from"], first.as_str());
    assert_eq!(v["lineage"], format!("run:{first}"));
    assert_eq!(v["items"]["skipped"], 1, "{v}");
    assert_eq!(v["items"]["in_doubt"], 1, "{v}");
    assert_eq!(v["items"]["done"], 2, "{v}");
    // The skipped `once` step's saved value is restored from the first run.
    assert_eq!(v["vars"]["setup"]["rows"], 1, "{v}");
    assert_eq!(v["vars"]["setup"]["path"], "out/once.csv", "{v}");
    // Every side effect exactly once; A2 (in doubt) was not typed again.
    assert_eq!(csv_ids(&ws, "out/entered.csv"), ["A1", "A2", "A3", "A4"]);
    assert_eq!(
        csv_ids(&ws, "out/once.csv"),
        ["setup"],
        "the once step ran once"
    );
    // A1's output restored in its place; A2 has none.
    assert_eq!(ws.read("out/results.txt"), "A1-ok,A3-ok,A4-ok");
    assert_eq!(item_state(&ws, "A2"), "in_doubt");
    assert_eq!(item_state(&ws, "A1"), "done");

    // A second resume of the same run, or of the finished one, is refused.
    let second = resume(&ws, &first, &[]);
    assert_eq!(second.code(), 2);
    assert!(
        second.stderr().contains("already resumed by run"),
        "{}",
        second.stderr()
    );
    let resumed = v["id"].as_str().unwrap().to_string();
    // Resuming again (the run succeeded with exceptions) never re-enters A2.
    let again = resume(&ws, &resumed, &[]).ok().json();
    assert_eq!(again["status"], "succeeded_with_exceptions");
    assert_eq!(again["items"]["in_doubt"], 1);
    assert_eq!(again["items"]["skipped"], 3);
    assert_eq!(csv_ids(&ws, "out/entered.csv"), ["A1", "A2", "A3", "A4"]);
    assert_eq!(ws.read("out/results.txt"), "A1-ok,A3-ok,A4-ok");

    // The skipped setup step is audited with its reason.
    let skipped = query(
        &ws,
        &format!(
            "SELECT detail FROM audit_events WHERE kind = 'step.skipped' AND run_id = '{resumed}'"
        ),
    );
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].contains("once: true"), "{skipped:?}");

    // A person checks A2 in the target system and requeues it: the next
    // run of the lineage would do it (store API; the CLI is `clerk items retry`).
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = open_store(&ws).await;
        let requeued = store
            .requeue_items(&["A2".to_string()], None, "alice", Some("checked by hand"))
            .await
            .unwrap();
        assert_eq!(requeued.len(), 1);
        assert_eq!(requeued[0].state, ItemState::Pending);
        let trace = store.events_for_item("A2").await.unwrap();
        let kinds: Vec<&str> = trace.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds.first(), Some(&"item.started"));
        assert_eq!(kinds.last(), Some(&"admin.item_requeued"));
        assert!(kinds.contains(&"item.in_doubt"), "{kinds:?}");
        assert!(kinds.contains(&"item.skipped"), "{kinds:?}");
        assert_eq!(trace.last().unwrap().actor, "alice");
        // All three runs of the lineage are in the trace, and nothing else.
        let runs: std::collections::BTreeSet<_> =
            trace.iter().filter_map(|e| e.run_id.clone()).collect();
        assert_eq!(runs.len(), 3, "{runs:?}");
        assert!(trace.iter().all(|e| e.item_key.as_deref() == Some("A2")));
        store.close().await;
    });
    drop(rt);
    ws.clerk(&["audit", "verify"]).ok();
}

fn killed_item_with_verify_found_is_done_with_the_found_output(backend: Backend) {
    let ws = Workspace::new(backend);
    ws.write("items.yaml", &with_verify());
    let first = run_and_kill(&ws, "after");
    let v = resume(&ws, &first, &[]).ok().json();
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(csv_ids(&ws, "out/entered.csv"), ["A1", "A2", "A3", "A4"]);
    assert_eq!(ws.read("out/results.txt"), "A1-ok,A2-found,A3-ok,A4-ok");
    assert_eq!(item_state(&ws, "A2"), "done");
    assert_eq!(
        query(
            &ws,
            "SELECT attempts, output FROM work_items WHERE item_key = 'A2'"
        ),
        ["1|\"A2-found\""]
    );
    let verified = query(
        &ws,
        "SELECT outcome FROM audit_events WHERE kind = 'item.verified' AND item_key = 'A2'",
    );
    assert_eq!(verified, ["ok"]);
    // A run that succeeded is not resumed.
    let done = resume(&ws, v["id"].as_str().unwrap(), &[]);
    assert_eq!(done.code(), 2);
    assert!(done.stderr().contains("is succeeded"), "{}", done.stderr());
    ws.clerk(&["audit", "verify"]).ok();
}

fn killed_item_with_verify_not_found_is_redone_once(backend: Backend) {
    let ws = Workspace::new(backend);
    ws.write("items.yaml", &with_verify());
    let first = run_and_kill(&ws, "before");
    assert_eq!(csv_ids(&ws, "out/entered.csv"), ["A1"]);
    let v = resume(&ws, &first, &[]).ok().json();
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(csv_ids(&ws, "out/entered.csv"), ["A1", "A2", "A3", "A4"]);
    assert_eq!(ws.read("out/results.txt"), "A1-ok,A2-ok,A3-ok,A4-ok");
    assert_eq!(
        query(
            &ws,
            "SELECT state, attempts FROM work_items WHERE item_key = 'A2'"
        ),
        ["done|2"]
    );
    assert_eq!(
        query(
            &ws,
            "SELECT outcome FROM audit_events WHERE kind = 'item.verified' AND item_key = 'A2'"
        ),
        ["not_found"]
    );
}

fn changed_playbook_is_refused_unless_forced(backend: Backend) {
    let ws = Workspace::new(backend);
    ws.write("items.yaml", ITEMS);
    let first = run_and_kill(&ws, "after");
    ws.write(
        "items.yaml",
        &ITEMS
            .replace("rows: [{ id: A1 }", "rows: [{ id: A0 }, { id: A1 }")
            .replace(
                "  - file.exists: stop-after-loop\n",
                "  - log: new step\n  - file.exists: stop-after-loop\n",
            ),
    );
    let r = resume(&ws, &first, &[]);
    assert_eq!(r.code(), 2, "{}", r.stdout());
    let err = r.stderr();
    assert!(err.contains("changed since run"), "{err}");
    assert!(err.contains("changed: 1.load"), "{err}");
    assert!(err.contains("added: 4.log"), "{err}");
    assert!(err.contains("--force-changed"), "{err}");
    assert_eq!(
        query(&ws, "SELECT COUNT(*) FROM runs"),
        ["1"],
        "nothing started"
    );

    let v = resume(&ws, &first, &["--force-changed"]).ok().json();
    assert_eq!(v["status"], "succeeded_with_exceptions", "{v}");
    // A0 is new, A1 done before, A2 in doubt, A3 and A4 new.
    assert_eq!(
        csv_ids(&ws, "out/entered.csv"),
        ["A1", "A2", "A0", "A3", "A4"]
    );
    let started = query(
        &ws,
        &format!(
            "SELECT detail FROM audit_events WHERE kind = 'run.started' AND run_id = '{}'",
            v["id"].as_str().unwrap()
        ),
    );
    let detail: Value = serde_json::from_str(&started[0]).unwrap();
    assert_eq!(detail["force_changed"], true);
    assert_eq!(detail["resumed_from"], first.as_str());
    assert_eq!(detail["playbook_changes"]["changed"], json!(["1.load"]));
    ws.clerk(&["audit", "verify"]).ok();
}

// ------------------------------------------------- events, secrets, outcome

fn every_event_inside_an_item_carries_its_key(backend: Backend) {
    let ws = Workspace::new(backend);
    ws.write("items.yaml", ITEMS);
    ws.clerk(&["run", "items.yaml"]).ok();
    let unkeyed = query(
        &ws,
        "SELECT COUNT(*) FROM audit_events WHERE step LIKE '3/item[%' AND item_key IS NULL",
    );
    assert_eq!(unkeyed, ["0"]);
    // item.started, 4 nested step events (2 actions + 2 skipped waits), item.finished.
    let a3 = query(
        &ws,
        "SELECT kind FROM audit_events WHERE item_key = 'A3' ORDER BY id",
    );
    assert_eq!(a3.first().map(String::as_str), Some("item.started"));
    assert_eq!(a3.last().map(String::as_str), Some("item.finished"));
    assert!(a3.iter().filter(|k| *k == "action").count() >= 2, "{a3:?}");
    assert_eq!(
        query(
            &ws,
            "SELECT COUNT(*) FROM audit_events WHERE item_key IS NOT NULL AND step NOT LIKE '3/item[%'"
        ),
        ["0"]
    );
    // The ledger row points at the event that recorded its last change.
    let hash = query(
        &ws,
        "SELECT event_hash FROM work_items WHERE item_key = 'A3'",
    );
    let ev = query(
        &ws,
        "SELECT hash FROM audit_events WHERE item_key = 'A3' AND kind = 'item.finished'",
    );
    assert_eq!(hash, ev);
    ws.clerk(&["audit", "verify"]).ok();
}

/// An item's end is committed with the next item's start (one commit); a
/// loop that stops before that next start — here the third item's
/// `checkpoint` cannot be worked out — still commits the second item's end:
/// both done, with one `item.finished` each, and the chain verifies.
fn a_loop_that_stops_early_keeps_the_last_items_end(backend: Backend) {
    let ws = Workspace::new(backend);
    ws.write(
        "early.yaml",
        r#"name: early
steps:
  - for_each: [{ id: B1 }, { id: B2 }, { other: 3 }]
    as: row
    checkpoint: "{{ row.id }}"
    steps:
      - log: "item {{ row.id }}"
"#,
    );
    let run = ws.clerk(&["run", "early.yaml", "--json"]);
    assert_eq!(run.code(), 1, "{}{}", run.stdout(), run.stderr());
    assert!(
        run.stdout().contains("checkpoint"),
        "the failure names the checkpoint: {}",
        run.stdout()
    );
    assert_eq!(item_state(&ws, "B1"), "done");
    assert_eq!(item_state(&ws, "B2"), "done");
    for key in ["B1", "B2"] {
        assert_eq!(
            query(
                &ws,
                &format!(
                    "SELECT kind FROM audit_events WHERE item_key = '{key}' \
                     AND kind IN ('item.started', 'step.started', 'item.finished') ORDER BY id"
                )
            ),
            ["item.started", "step.started", "item.finished"],
            "{key}"
        );
    }
    ws.clerk(&["audit", "verify"]).ok();
}

const SECRET_ITEMS: &str = r#"name: secret-items
steps:
  - for_each: [K1, K2]
    as: k
    checkpoint: "{{ k }}"
    output: "{{ k }}:{{ secrets.api_token }}"
    save_as: tokens
    steps:
      - log: "item {{ k }}"
  - file.exists: stop-after-loop
    save_as: stop
  - fail: stopped on purpose
    if: "{{ stop }}"
  - file.write: { path: out/tokens.txt, text: "{{ tokens | join(',') }}" }
"#;

fn secret_outputs_are_stored_masked_and_restored_as_mask(backend: Backend) {
    let ws = Workspace::new(backend);
    ws.write("s.yaml", SECRET_ITEMS);
    ws.write("stop-after-loop", "");
    let token = "tok-93b1f0c2e7";
    let env = [("CLERK_SECRET_API_TOKEN", token)];
    let r = ws.clerk_env(&["run", "s.yaml", "--json"], &env);
    assert_eq!(r.code(), 1, "{}", r.stderr());
    let first = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        query(
            &ws,
            "SELECT output, output_masked FROM work_items ORDER BY item_key"
        ),
        ["\"***\"|1", "\"***\"|1"]
    );
    std::fs::remove_file(ws.path().join("stop-after-loop")).unwrap();
    let r = ws
        .clerk_env(&["runs", "resume", &first, "--json"], &env)
        .ok();
    assert_eq!(r.json()["items"]["skipped"], 2);
    assert_eq!(ws.read("out/tokens.txt"), "***,***");
    let log = r.stderr();
    assert!(
        log.contains("work item K1") && log.contains("masked"),
        "{log}"
    );
    assert!(
        !common::dump_store(&ws).contains(token),
        "the secret is in the store"
    );
}

const EXCEPTIONS: &str = r#"name: exceptions
steps:
  - for_each: [ok1, biz, sys, ok2]
    as: k
    checkpoint: "{{ k }}"
    on_error: continue
    steps:
      - file.exists: fixed
        save_as: fixed
      - fail: { message: "portal rejected {{ k }}" }
        if: "{{ k == 'biz' and not fixed }}"
      - fail: { message: "portal down", retryable: true }
        if: "{{ k == 'sys' and not fixed }}"
      - sheet.append: { path: out/entered.csv, rows: [{ id: "{{ k }}" }] }
    output: "{{ k }}"
    save_as: done
"#;

fn exceptions_give_succeeded_with_exceptions_and_counts(backend: Backend) {
    let ws = Workspace::new(backend);
    ws.write("e.yaml", EXCEPTIONS);
    let r = ws.clerk(&["run", "e.yaml", "--json"]);
    assert_eq!(
        r.code(),
        0,
        "exit 0: the job itself did not fail; {}",
        r.stderr()
    );
    let v = r.json();
    assert_eq!(v["status"], "succeeded_with_exceptions");
    assert_eq!(
        v["items"],
        json!({"pending": 0, "in_progress": 0, "done": 2, "business_exception": 1,
               "system_exception": 1, "in_doubt": 0, "skipped": 0})
    );
    assert_eq!(v["vars"]["done"], json!(["ok1", "ok2"]));
    assert_eq!(
        query(
            &ws,
            "SELECT item_key, state, error_kind FROM work_items ORDER BY item_key"
        ),
        [
            "biz|business_exception|business",
            "ok1|done|",
            "ok2|done|",
            "sys|system_exception|system"
        ]
    );
    let id = v["id"].as_str().unwrap();
    assert_eq!(
        query(&ws, &format!("SELECT status FROM runs WHERE id = '{id}'")),
        ["succeeded_with_exceptions"]
    );
    assert_eq!(csv_ids(&ws, "out/entered.csv"), ["ok1", "ok2"]);

    // A person fixes the rejected request and requeues it; the resume
    // enters it and retries the system exception; done items are skipped.
    ws.write("fixed", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = open_store(&ws).await;
        let lineage = format!("run:{id}");
        // Listing and counting, as `clerk items` and `runs show` will.
        let counts = store.item_counts_for_run(id).await.unwrap();
        assert_eq!(
            (
                counts.done,
                counts.business_exception,
                counts.system_exception
            ),
            (2, 1, 1)
        );
        assert_eq!(
            store.item_counts_for_lineage(&lineage).await.unwrap(),
            counts
        );
        let biz = store
            .list_items(&clerk::store::ItemFilter {
                state: Some(ItemState::BusinessException),
                lineage: Some(lineage.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(biz.len(), 1);
        assert_eq!(biz[0].item_key, "biz");
        assert_eq!(biz[0].error.as_deref(), Some("portal rejected biz"));
        assert_eq!(biz[0].error_kind.as_deref(), Some("business"));
        assert_eq!(biz[0].run_id, id);
        let by_key = store
            .list_items(&clerk::store::ItemFilter {
                key: Some("ok2".into()),
                run: Some(id.to_string()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(by_key.len(), 1);
        assert_eq!(by_key[0].output, Some(json!("ok2")));
        let n = store
            .requeue_items(&["biz".into(), "ok1".into()], Some(&lineage), "alice", None)
            .await
            .unwrap();
        assert_eq!(n.len(), 1, "only the business exception is requeued");
        store.close().await;
    });
    drop(rt);
    let again = resume(&ws, id, &[]).ok().json();
    assert_eq!(again["status"], "succeeded", "{again}");
    assert_eq!(again["items"]["skipped"], 2);
    assert_eq!(again["items"]["done"], 2);
    assert_eq!(again["vars"]["done"], json!(["ok1", "biz", "sys", "ok2"]));
    assert_eq!(
        csv_ids(&ws, "out/entered.csv"),
        ["ok1", "ok2", "biz", "sys"]
    );

    let text = ws.clerk(&["run", "e.yaml"]).ok().stdout();
    assert!(text.contains("succeeded"), "{text}");
    assert!(text.contains("items: 4 done"), "{text}");
}

const MAIL_THEN_STOP: &str = r#"name: mail-then-stop
steps:
  - name: Tell the team
    mail.send:
      to: [team@city.example]
      subject: "Report of run {{ run.id }}"
      text: "done"
  - file.exists: stop-after-mail
    save_as: stop
  - fail: stopped on purpose
    if: "{{ stop }}"
"#;

fn outbox_files(ws: &Workspace) -> usize {
    std::fs::read_dir(ws.path().join(".clerk/outbox"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                .count()
        })
        .unwrap_or(0)
}

fn a_mail_sent_in_a_lineage_is_not_sent_again_on_resume(backend: Backend) {
    let ws = Workspace::new(backend);
    ws.write("m.yaml", MAIL_THEN_STOP);
    ws.write("stop-after-mail", "");
    let r = ws.clerk(&["run", "m.yaml", "--json"]);
    assert_eq!(r.code(), 1, "{}", r.stderr());
    let first = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(outbox_files(&ws), 1);
    std::fs::remove_file(ws.path().join("stop-after-mail")).unwrap();
    // The subject differs in the resumed run (it names the run): still the same mail.
    let v = resume(&ws, &first, &[]).ok().json();
    assert_eq!(v["status"], "succeeded");
    assert_eq!(
        outbox_files(&ws),
        1,
        "the resumed run did not send the mail again"
    );
    let sent = query(
        &ws,
        &format!(
            "SELECT detail FROM audit_events WHERE action = 'mail.send' AND run_id = '{}'",
            v["id"].as_str().unwrap()
        ),
    );
    let detail: Value = serde_json::from_str(&sent[0]).unwrap();
    assert_eq!(detail["already_sent"], true);
    assert_eq!(detail["first_sent_by_run"], first.as_str());
    // A new `clerk run` is a new lineage: it mails again.
    ws.clerk(&["run", "m.yaml"]).ok();
    assert_eq!(outbox_files(&ws), 2);
}

// ------------------------------------------- the scheduler's retry as resume

const BOT_ITEMS: &str = r#"name: bot-items
steps:
  - for_each: [A1, A2, A3]
    as: k
    checkpoint: "{{ k }}"
    steps:
      - file.exists: broken
        save_as: broken
      - fail: { message: "portal down", retryable: true }
        if: "{{ broken and k == 'A2' }}"
      - sheet.append: { path: out/entered.csv, rows: [{ id: "{{ k }}" }] }
    output: "{{ k }}"
    save_as: entered
"#;

/// Executes run `id` the way serve's worker does, with a follow-up decision.
async fn execute_bot_run(
    ws: &Workspace,
    store: &Store,
    id: &str,
    follow_up: Option<clerk::engine::FollowUpFn>,
) -> clerk::engine::RunOutcome {
    use std::sync::Arc;
    let engine = clerk::engine::Engine {
        config: Arc::new(clerk::config::Config::load(ws.path()).unwrap()),
        recorder: clerk::audit::Recorder::new(store.clone(), Arc::new(clerk::secrets::redact)),
        secrets: Arc::new(clerk::secrets::Secrets::load(ws.path()).unwrap()),
    };
    let pb = clerk::playbook::load_file(&ws.path().join("bot.yaml"), &clerk::actions::Registry)
        .unwrap_or_else(|d| panic!("{d}"));
    let req = clerk::engine::RunRequest {
        playbook: Arc::new(pb),
        inputs: Default::default(),
        actor: "nightly".into(),
        bot: Some("nightly".into()),
        workspace: ws.path().to_path_buf(),
        cancel: Default::default(),
        max_runtime: None,
        progress: false,
    };
    match follow_up {
        Some(f) => engine.execute_with_follow_up(id, req, f).await.unwrap(),
        None => engine.execute(id, req).await.unwrap(),
    }
}

fn a_bot_retry_queued_as_resume_skips_done_items(backend: Backend) {
    let ws = Workspace::new(backend);
    ws.write("bot.yaml", BOT_ITEMS);
    ws.write("broken", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = open_store(&ws).await;
        let id = ulid::Ulid::new().to_string();
        store
            .create_run(
                &NewRun {
                    id: id.clone(),
                    bot: Some("nightly".into()),
                    playbook: "bot.yaml".into(),
                    inputs: json!({}),
                    scheduled_for: Some(chrono::Utc::now()),
                    actor: "nightly".into(),
                    attempt: 1,
                    status: "running".into(),
                    ..Default::default()
                },
                NewEvent::new("run.started", "nightly"),
            )
            .await
            .unwrap()
            .unwrap();
        let retry_id = ulid::Ulid::new().to_string();
        let decided = retry_id.clone();
        let outcome = execute_bot_run(
            &ws,
            &store,
            &id,
            Some(Box::new(move |o: &clerk::engine::RunOutcome| {
                (o.status == clerk::engine::RunStatus::Failed).then(|| FollowUpRun {
                    id: decided,
                    due_at: chrono::Utc::now(),
                    overlap: "queue".into(),
                    resume: true,
                    event: NewEvent::new("run.queued", "nightly"),
                })
            })),
        )
        .await;
        assert_eq!(outcome.status.as_str(), "failed");
        assert_eq!(outcome.follow_up.as_deref(), Some(retry_id.as_str()));
        assert_eq!(outcome.items.system_exception, 1);
        assert!(outcome.lineage.starts_with("bot:nightly@"));
        // The end and the follow-up are one transaction: consecutive events.
        // (The checkpoint written after every run is not part of it.)
        let evs: Vec<_> = store
            .events(None, 0, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind != "audit.checkpoint")
            .collect();
        let n = evs.len();
        assert_eq!(evs[n - 2].kind, "run.finished");
        assert_eq!(evs[n - 2].run_id.as_deref(), Some(id.as_str()));
        assert_eq!(evs[n - 1].kind, "run.queued");
        assert_eq!(evs[n - 1].run_id.as_deref(), Some(retry_id.as_str()));

        // The worker claims the retry (the portal is back) and runs it.
        std::fs::remove_file(ws.path().join("broken")).unwrap();
        let claim = store
            .claim_due("w1", clerk::store::ClaimScope::AnyBot)
            .await
            .unwrap();
        let run = claim.run.expect("the retry is due");
        assert_eq!(run.id, retry_id);
        assert_eq!(run.lineage, outcome.lineage);
        assert_eq!(run.resumed_from.as_deref(), Some(id.as_str()));
        let second = execute_bot_run(&ws, &store, &retry_id, None).await;
        assert_eq!(second.status.as_str(), "succeeded");
        assert_eq!(second.items.skipped, 1);
        assert_eq!(second.items.done, 2);
        assert_eq!(second.vars["entered"], json!(["A1", "A2", "A3"]));
        store.close().await;
    });
    drop(rt);
    assert_eq!(csv_ids(&ws, "out/entered.csv"), ["A1", "A2", "A3"]);
    ws.clerk(&["audit", "verify"]).ok();
}

// ------------------------------------------------------ guarded transitions

async fn open_store(ws: &Workspace) -> Store {
    let url = match &ws.db_url {
        Some(u) => u.clone(),
        None => format!("sqlite://{}/.clerk/clerk.db", ws.path().display()),
    };
    Store::open(&url).await.unwrap()
}

async fn count_events(store: &Store) -> i64 {
    use sqlx::Row as _;
    sqlx::query("SELECT COUNT(*) AS n FROM audit_events")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap()
}

fn guarded_transitions_let_one_racer_win(backend: Backend) {
    let ws = Workspace::new(backend);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = open_store(&ws).await;
        let id = ulid::Ulid::new().to_string();
        let run = store
            .create_run(
                &NewRun {
                    id: id.clone(),
                    bot: Some("nightly".into()),
                    playbook: "p.yaml".into(),
                    inputs: json!({}),
                    scheduled_for: Some(chrono::Utc::now()),
                    actor: "nightly".into(),
                    attempt: 1,
                    status: "running".into(),
                    ..Default::default()
                },
                NewEvent::new("run.started", "nightly"),
            )
            .await
            .unwrap()
            .unwrap();
        assert!(run.lineage.starts_with("bot:nightly@"), "{}", run.lineage);
        let before = count_events(&store).await;

        // Two processes end the same running run: the worker (failed) and a
        // sweeper (interrupted). Exactly one wins; the other writes nothing.
        let change = |status: &str| RunChange {
            status: Some(status.into()),
            finished_at: Some(chrono::Utc::now()),
            ..Default::default()
        };
        let (a, b) = tokio::join!(
            store.transition_run(
                &id,
                &["running"],
                change("failed"),
                NewEvent::new("run.finished", "w")
            ),
            store.transition_run(
                &id,
                &["running"],
                change("interrupted"),
                NewEvent::new("run.interrupted", "s")
            ),
        );
        let (won, lost) = match (&a, &b) {
            (Ok(r), Err(e)) | (Err(e), Ok(r)) => (r.status.clone(), e.to_string()),
            _ => panic!("exactly one must win: {a:?} {b:?}"),
        };
        let err = a.as_ref().err().or(b.as_ref().err()).unwrap();
        assert!(matches!(err, StoreError::StateConflict { .. }), "{err}");
        assert!(!err.is_transient());
        assert!(
            lost.contains(&format!("is {won}, expected running")),
            "{lost}"
        );
        assert_eq!(
            count_events(&store).await,
            before + 1,
            "one event, the winner's"
        );
        assert_eq!(store.get_run(&id).await.unwrap().unwrap().status, won);

        // The end of a run and its follow-up (a retry as resume) commit together.
        let id2 = ulid::Ulid::new().to_string();
        let (failed, next) = store
            .finish_run_and_enqueue(
                &id,
                &[won.as_str()],
                RunChange::default(),
                NewEvent::new("run.note", "w"),
                Some(FollowUpRun {
                    id: id2.clone(),
                    due_at: chrono::Utc::now(),
                    overlap: "queue".into(),
                    resume: true,
                    event: NewEvent::new("run.queued", "nightly"),
                }),
            )
            .await
            .unwrap();
        let next = next.unwrap();
        assert_eq!(next.status, "queued");
        assert_eq!(next.lineage, failed.lineage);
        assert_eq!(next.resumed_from.as_deref(), Some(id.as_str()));
        assert_eq!(next.attempt, 2);
        // A second follow-up of the same run is refused, and nothing of it is written.
        let n = count_events(&store).await;
        let dup = store
            .finish_run_and_enqueue(
                &id,
                &[],
                RunChange::default(),
                NewEvent::new("run.note", "w"),
                Some(FollowUpRun {
                    id: ulid::Ulid::new().to_string(),
                    due_at: chrono::Utc::now(),
                    overlap: "queue".into(),
                    resume: true,
                    event: NewEvent::new("run.queued", "nightly"),
                }),
            )
            .await
            .unwrap_err();
        assert!(dup.to_string().contains("already resumed by run"), "{dup}");
        assert_eq!(count_events(&store).await, n);

        // Items: two runs start the same pending item; one wins.
        let item = ItemId::new(&failed.lineage, "3.enter", "PR-1");
        let start = ItemChange {
            new_attempt: true,
            ..ItemChange::to(ItemState::InProgress, &id2)
        };
        let n = count_events(&store).await;
        let (a, b) = tokio::join!(
            store.transition_item(
                &item,
                &[ItemState::Pending],
                &start,
                NewEvent::new("item.started", "a")
            ),
            store.transition_item(
                &item,
                &[ItemState::Pending],
                &start,
                NewEvent::new("item.started", "b")
            ),
        );
        assert!(a.is_ok() != b.is_ok(), "{a:?} {b:?}");
        let err = a.as_ref().err().or(b.as_ref().err()).unwrap();
        assert!(
            err.to_string().contains("is in_progress, expected pending"),
            "{err}"
        );
        assert_eq!(count_events(&store).await, n + 1);
        let (row, ev) = a.or(b).unwrap();
        assert_eq!(row.attempts, 1);
        assert_eq!(row.event_hash.as_deref(), Some(ev.hash.as_str()));
        assert_eq!(ev.item_key.as_deref(), Some("PR-1"));
        // A bot retry queued by the scheduler shares the lineage of the run it retries.
        let id3 = ulid::Ulid::new().to_string();
        store
            .write_sched_batch(&SchedBatch {
                runs: vec![QueuedRun {
                    id: id3.clone(),
                    bot: "nightly".into(),
                    playbook: "p.yaml".into(),
                    inputs: json!({}),
                    scheduled_for: None,
                    due_at: chrono::Utc::now(),
                    overlap: "queue".into(),
                    actor: "nightly".into(),
                    attempt: 3,
                    retry_of: Some(id2.clone()),
                    event: NewEvent::new("run.queued", "nightly"),
                }],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            store.get_run(&id3).await.unwrap().unwrap().lineage,
            failed.lineage
        );
        let counts = store
            .item_counts_for_lineage(&failed.lineage)
            .await
            .unwrap();
        assert_eq!(counts.in_progress, 1);
        assert_eq!(counts.total(), 1);
        store.close().await;
    });
    ws.clerk(&["audit", "verify"]).ok();
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[test]
            fn sqlite() {
                super::$name(Backend::Sqlite);
            }
            #[test]
            fn postgres() {
                super::$name(Backend::Postgres);
            }
        }
    )*};
}

both!(
    killed_item_without_verify_is_in_doubt_and_never_redone,
    killed_item_with_verify_found_is_done_with_the_found_output,
    killed_item_with_verify_not_found_is_redone_once,
    changed_playbook_is_refused_unless_forced,
    every_event_inside_an_item_carries_its_key,
    secret_outputs_are_stored_masked_and_restored_as_mask,
    exceptions_give_succeeded_with_exceptions_and_counts,
    guarded_transitions_let_one_racer_win,
    a_mail_sent_in_a_lineage_is_not_sent_again_on_resume,
    a_bot_retry_queued_as_resume_skips_done_items,
    a_loop_that_stops_early_keeps_the_last_items_end,
);
