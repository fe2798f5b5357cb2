//! Core runtime, end to end through the real `clerk` binary: validation with
//! positions, runs with loops and retries, the audit chain and tampering, and
//! secrets that never leak — on SQLite and on PostgreSQL.

mod common;

use common::{Backend, Workspace, dump_store, sql};
use serde_json::Value;

const BROKEN: &str = r#"name: broken
inputs:
  source: { type: path, default: in.txt }
steps:
  - name: Read
    file.raed: { path: "{{ inputs.source }}" }
  - name: Wait a bit
    wait: { duration: [1, 2] }
  - name: Log
    log: "{{ inputs.sourse }}"
"#;

#[test]
fn validate_reports_every_problem_with_positions() {
    let ws = Workspace::new(Backend::Sqlite);
    ws.write("broken.yaml", BROKEN);
    let r = ws.clerk(&["validate", "broken.yaml"]);
    assert_eq!(r.code(), 2, "{}{}", r.stdout(), r.stderr());
    let out = r.stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0]
            .ends_with("broken.yaml:6:5: unknown action `file.raed` (did you mean `file.read`?)"),
        "{out}"
    );
    assert!(lines[1].contains("broken.yaml:8:23: `wait`:"), "{out}");
    assert!(lines[1].contains("duration"), "{out}");
    assert!(lines[2].contains("broken.yaml:10:10: input `sourse` is not declared in `inputs:` (did you mean `source`?)"), "{out}");
    assert!(!out.contains("Error {"), "debug dump in {out}");
}

#[test]
fn validate_catches_structure_problems() {
    let ws = Workspace::new(Backend::Sqlite);
    ws.write(
        "p.yaml",
        r#"name: p
steps:
  - log: hi
    wait: 1s
  - file.read: { path: a.txt, colour: red }
  - name: no action here
  - log: "{{ unclosed "
  - wait: soon
  - for_each: "{{ rows }}"
    log: "{{ item }}"
  - file.write: { text: x }
"#,
    );
    let r = ws.clerk(&["validate", "p.yaml"]);
    assert_eq!(r.code(), 2);
    let out = r.stdout();
    assert!(
        out.contains("p.yaml:4:5: a step has exactly one action"),
        "{out}"
    );
    assert!(
        out.contains("p.yaml:5:39: `file.read`: unknown field `colour`"),
        "{out}"
    );
    assert!(out.contains("p.yaml:6:5: step 3 has no action"), "{out}");
    assert!(out.contains("p.yaml:7:10: invalid template"), "{out}");
    assert!(
        out.contains("p.yaml:8:11: `wait`: invalid duration `soon`"),
        "{out}"
    );
    assert!(
        out.contains("p.yaml:9:15: unknown variable `rows`"),
        "{out}"
    );
    assert!(
        out.contains("p.yaml:11:17: `file.write`: missing field `path`"),
        "{out}"
    );
}

#[test]
fn validate_accepts_the_repository_playbooks() {
    let ws = Workspace::new(Backend::Sqlite);
    let root = env!("CARGO_MANIFEST_DIR");
    let r = ws.clerk(&["validate", &format!("{root}/playbooks")]);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(r.stdout().starts_with("ok: "));
}

#[test]
fn bad_yaml_and_missing_files_are_clear() {
    let ws = Workspace::new(Backend::Sqlite);
    ws.write("bad.yaml", "name: x\nsteps: [\n  - log: a\n");
    let r = ws.clerk(&["validate", "bad.yaml", "missing.yaml"]);
    assert_eq!(r.code(), 2);
    let out = r.stdout();
    assert!(
        out.contains("bad.yaml:") && out.contains("invalid YAML"),
        "{out}"
    );
    assert!(
        out.contains("missing.yaml:1:1: no such file or folder"),
        "{out}"
    );
    let r = ws.clerk(&["run", "missing.yaml"]);
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().contains("cannot read the playbook"),
        "{}",
        r.stderr()
    );
}

const LOOP: &str = r#"name: lines
inputs:
  source: { type: path, default: in.txt }
  prefix: { type: string, required: true }
steps:
  - name: Read the export
    file.read: "{{ inputs.source }}"
    save_as: doc
  - name: Each line
    for_each: "{{ doc.lines }}"
    as: line
    checkpoint: "{{ line }}"
    retry: { attempts: 3, delay: 10ms, backoff: 2.0 }
    steps:
      - name: Flaky on the first attempt of item 2
        file.exists: "marker-{{ loop.index }}"
        save_as: seen
      - file.write: { path: "marker-{{ loop.index }}", text: "x" }
      - fail: { message: "transient problem", retryable: true }
        if: "{{ loop.index == 2 and not seen }}"
    output: "{{ inputs.prefix }}{{ line | upper }}"
    save_as: results
  - name: Write the result
    file.write: { path: "out/result.txt", text: "{{ results | join('\n') }}" }
    save_as: written
"#;

fn run_loop_playbook(backend: Backend) {
    let ws = Workspace::new(backend);
    ws.write("in.txt", "alpha\nbeta\ngamma {{ secrets.api_key }}\n");
    ws.write("lines.yaml", LOOP);
    let r = ws
        .clerk(&["run", "lines.yaml", "--input", "prefix=> ", "--json"])
        .ok();
    let v = r.json();
    assert_eq!(v["status"], "succeeded");
    // Data is never rendered as a template: the literal braces survive.
    assert_eq!(
        ws.read("out/result.txt"),
        "> ALPHA\n> BETA\n> GAMMA {{ SECRETS.API_KEY }}"
    );
    assert_eq!(v["vars"]["results"][2], "> GAMMA {{ SECRETS.API_KEY }}");
    assert_eq!(v["vars"]["written"]["size"], 44);
    let id = v["id"].as_str().unwrap().to_string();

    let show = ws.clerk(&["runs", "show", &id]).ok().stdout();
    assert!(show.contains("Read the export"), "{show}");
    assert!(show.contains("2/item[2]/3"), "{show}");
    assert!(show.contains("(attempt 2)"), "{show}");
    assert!(show.contains("items: 3 ok, 0 failed"), "{show}");
    let show_json = ws.clerk(&["runs", "show", &id, "--json"]).ok().json();
    let events = show_json["events"].as_array().unwrap();
    // The file read records the path and the content's SHA-256.
    let read = events
        .iter()
        .find(|e| e["action"] == "file.read")
        .expect("file.read event");
    assert_eq!(read["target"], "in.txt");
    assert_eq!(read["detail"]["sha256"].as_str().unwrap().len(), 64);
    // Each failed attempt is its own audit event.
    let fails = events
        .iter()
        .filter(|e| e["action"] == "fail" && e["outcome"] == "failed")
        .count();
    assert_eq!(fails, 1);

    let list = ws.clerk(&["runs", "list", "--json"]).ok().json();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["bot"], Value::Null);
    assert_eq!(list[0]["status"], "succeeded");
    for key in ["playbook", "scheduled_for", "started_at", "finished_at"] {
        assert!(list[0].get(key).is_some(), "missing {key}");
    }

    let verify = ws.clerk(&["audit", "verify"]).ok();
    assert!(verify.stdout().starts_with("ok: "), "{}", verify.stdout());

    // Tampering: an edited event is detected and named.
    sql(
        &ws,
        "UPDATE audit_events SET target = 'elsewhere.txt' WHERE action = 'file.read'",
    );
    let verify = ws.clerk(&["audit", "verify"]);
    assert_eq!(verify.code(), 1, "{}", verify.stdout());
    assert!(
        verify.stdout().contains("tampered: event"),
        "{}",
        verify.stdout()
    );
}

#[test]
fn run_loop_retry_and_tamper_sqlite() {
    run_loop_playbook(Backend::Sqlite);
}

#[test]
fn run_loop_retry_and_tamper_postgres() {
    run_loop_playbook(Backend::Postgres);
}

fn tamper_delete_and_insert(backend: Backend) {
    let ws = Workspace::new(backend);
    ws.write(
        "p.yaml",
        "name: p\nsteps:\n  - log: one\n  - log: two\n  - log: three\n",
    );
    ws.clerk(&["run", "p.yaml"]).ok();
    ws.clerk(&["audit", "verify"]).ok();
    sql(&ws, "DELETE FROM audit_events WHERE id = 3");
    let r = ws.clerk(&["audit", "verify"]);
    assert_eq!(r.code(), 1);
    assert!(r.stdout().contains("event 4"), "{}", r.stdout());

    let ws = Workspace::new(backend);
    ws.write("p.yaml", "name: p\nsteps:\n  - log: one\n");
    ws.clerk(&["run", "p.yaml"]).ok();
    sql(
        &ws,
        "INSERT INTO audit_events (id, run_id, seq, at, actor, kind, detail, prev_hash, hash) \
         SELECT id + 1, run_id, seq + 1, at, actor, 'action', '{}', hash, hash FROM audit_events \
         WHERE id = (SELECT MAX(id) FROM audit_events)",
    );
    let r = ws.clerk(&["audit", "verify"]);
    assert_eq!(r.code(), 1, "{}", r.stdout());
    assert!(r.stdout().contains("tampered"), "{}", r.stdout());
}

#[test]
fn tampering_by_delete_and_insert_is_detected_sqlite() {
    tamper_delete_and_insert(Backend::Sqlite);
}

#[test]
fn tampering_by_delete_and_insert_is_detected_postgres() {
    tamper_delete_and_insert(Backend::Postgres);
}

const SECRETS: &str = r#"name: secrets
steps:
  - file.write: { path: out/token.txt, text: "{{ secrets.api_token }}" }
  - log: "plain {{ secrets.api_token }}"
  - log: "{{ secrets.api_token | upper }}"
  - log: "{{ 'x' ~ secrets.api_token ~ 'y' }}"
  - set: { squashed: "{{ secrets.api_token | replace('-', '') }}" }
  - log: "squashed is {{ squashed }}"
  - file.write: { path: out/squashed.txt, text: "{{ squashed | lower }}" }
  - assert:
      that: "{{ squashed == 'nope' }}"
      message: "token {{ squashed }} was not accepted"
"#;

fn secrets_never_leak(backend: Backend) {
    let token = "tok-Alpha-7731-Zulu";
    let forms = [
        token.to_string(),
        token.to_uppercase(),
        token.to_lowercase(),
        token.replace('-', ""),
        token.replace('-', "").to_lowercase(),
        token.replace('-', "").to_uppercase(),
    ];
    let ws = Workspace::new(backend);
    ws.write("s.yaml", SECRETS);
    let env = [("CLERK_SECRET_API_TOKEN", token), ("RUST_LOG", "debug")];
    let run = ws.clerk_env(&["run", "s.yaml", "--json"], &env);
    assert_eq!(
        run.code(),
        1,
        "the assert must fail the run: {}",
        run.stderr()
    );
    // The secret did reach the file it was written to...
    assert_eq!(ws.read("out/token.txt"), token);
    let v = run.json();
    assert_eq!(v["status"], "failed");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("token *** was not accepted")
    );
    assert_eq!(v["vars"]["squashed"], "***");
    let text_run = ws.clerk_env(&["run", "s.yaml"], &env);
    assert_eq!(text_run.code(), 1);
    let show = ws.clerk(&["runs", "show", v["id"].as_str().unwrap()]).ok();
    let export = ws.clerk(&["audit", "export"]).ok();
    let csv = ws.clerk(&["audit", "export", "--format", "csv"]).ok();
    assert!(
        export.stdout().contains("\"message\":\"plain ***\""),
        "{}",
        export.stdout()
    );
    let everything = [
        run.stdout(),
        run.stderr(),
        text_run.stdout(),
        text_run.stderr(),
        show.stdout(),
        export.stdout(),
        csv.stdout(),
        dump_store(&ws),
    ]
    .join("\n");
    for form in &forms {
        assert!(
            !everything.contains(form.as_str()),
            "secret form `{form}` leaked:\n{everything}"
        );
    }
    ws.clerk(&["audit", "verify"]).ok();
}

#[test]
fn secrets_never_leak_sqlite() {
    secrets_never_leak(Backend::Sqlite);
}

#[test]
fn secrets_never_leak_postgres() {
    secrets_never_leak(Backend::Postgres);
}

#[test]
fn secrets_file_must_be_private() {
    use std::os::unix::fs::PermissionsExt;
    let ws = Workspace::new(Backend::Sqlite);
    let f = ws.write(".clerk/secrets.yaml", "api_token: from-the-file-123\n");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    ws.write(
        "p.yaml",
        "name: p\nsteps:\n  - log: \"{{ secrets.api_token }}\"\n",
    );
    let r = ws.clerk(&["run", "p.yaml"]);
    assert_eq!(r.code(), 1);
    assert!(r.stderr().contains("chmod 600"), "{}", r.stderr());
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = ws.clerk(&["run", "p.yaml", "--json"]).ok();
    assert_eq!(r.json()["status"], "succeeded");
    assert!(!dump_store(&ws).contains("from-the-file-123"));
    // A secret that is not set is a clear error naming the variable to set.
    ws.write(
        "q.yaml",
        "name: q\nsteps:\n  - log: \"{{ secrets.nope }}\"\n",
    );
    let r = ws.clerk(&["run", "q.yaml"]);
    assert_eq!(r.code(), 1);
    assert!(r.stdout().contains("CLERK_SECRET_NOPE"), "{}", r.stdout());
}

#[test]
fn on_error_timeout_and_typed_templates() {
    let ws = Workspace::new(Backend::Sqlite);
    ws.write(
        "p.yaml",
        r#"name: p
inputs:
  n: { type: number, default: 3 }
  names: { type: list, default: [a, b] }
steps:
  - name: Too slow
    wait: 5s
    timeout: 100ms
    on_error: continue
  - name: Handled
    fail: "portal said no"
    on_error:
      - set: { handled: "{{ error.message }}", kind: "{{ error.kind }}" }
  - set: { doubled: "{{ inputs.n * 2 }}", count: "{{ inputs.names | length }}" }
  - name: Per item exceptions
    for_each: "{{ inputs.names }}"
    steps:
      - fail: "rejected {{ item }}"
        if: "{{ item == 'a' }}"
    on_error:
      - set: { last_rejected: "{{ item }}" }
    output: "{{ item }}"
    save_as: accepted
"#,
    );
    let v = ws
        .clerk(&["run", "p.yaml", "--json", "-i", "names=a,b,c"])
        .ok()
        .json();
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["vars"]["handled"], "portal said no");
    assert_eq!(v["vars"]["kind"], "business");
    assert_eq!(v["vars"]["doubled"], 6);
    assert_eq!(v["vars"]["count"], 3);
    assert_eq!(v["vars"]["last_rejected"], "a");
    assert_eq!(v["vars"]["accepted"], serde_json::json!(["b", "c"]));
    let export = ws.clerk(&["audit", "export"]).ok().stdout();
    assert!(export.contains("step timed out after 100ms"), "{export}");
}

#[test]
fn bad_inputs_are_usage_errors() {
    let ws = Workspace::new(Backend::Sqlite);
    ws.write("p.yaml", "name: p\ninputs:\n  n: { type: number, required: true }\nsteps:\n  - log: \"{{ inputs.n }}\"\n");
    let r = ws.clerk(&["run", "p.yaml"]);
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().contains("input `n` is required"),
        "{}",
        r.stderr()
    );
    let r = ws.clerk(&["run", "p.yaml", "-i", "n=seven"]);
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().contains("`seven` is not a number"),
        "{}",
        r.stderr()
    );
    let r = ws.clerk(&["run", "p.yaml", "-i", "m=1"]);
    assert_eq!(r.code(), 2);
    assert!(r.stderr().contains("unknown input `m`"), "{}", r.stderr());
    let r = ws.clerk(&["runs", "show", "nosuchrun"]);
    assert_eq!(r.code(), 2);
    assert!(!r.stderr().contains("Error {"));
}

#[test]
fn ctrl_c_cancels_the_run_cleanly() {
    let ws = Workspace::new(Backend::Sqlite);
    ws.write(
        "p.yaml",
        "name: p\nsteps:\n  - log: start\n  - wait: 30s\n  - log: never\n",
    );
    let child = ws
        .cmd()
        .args(["run", "p.yaml", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the run is under way (its first event is in the store).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let list = ws.clerk(&["runs", "list", "--json"]);
        if list.code() == 0 && list.json().as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "run never started");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // ... and inside its steps (its first `log` is recorded), so the signal
    // handlers installed before the run began are in place.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while common::query(
        &ws,
        "SELECT COUNT(*) FROM audit_events WHERE kind = 'action' AND action = 'log'",
    ) != vec!["1".to_string()]
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the first step never ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid = child.id() as i32;
    assert_eq!(unsafe_kill(pid), 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "cancelled");
    let list = ws.clerk(&["runs", "list", "--json"]).ok().json();
    assert_eq!(list[0]["status"], "cancelled");
    ws.clerk(&["audit", "verify"]).ok();
}

fn unsafe_kill(pid: i32) -> i32 {
    std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .map(|s| s.code().unwrap_or(-1))
        .unwrap_or(-1)
}

#[test]
fn actions_and_schema_are_generated_from_the_registry() {
    let ws = Workspace::new(Backend::Sqlite);
    let out = ws.clerk(&["actions"]).ok().stdout();
    assert!(out.contains("file.read\n"), "{out}");
    assert!(out.contains("path: string (required) [shorthand]"), "{out}");
    let list = ws.clerk(&["actions", "--json"]).ok().json();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "file.write")
    );
    let schema = ws.clerk(&["schema"]).ok().json();
    assert_eq!(schema["title"], "clerk playbook");
}
