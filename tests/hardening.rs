//! Hardening at the edges (issue 16): broken pipes, file modes, clear argument
//! and cron errors, the workspace boundary, resource limits, dead processes.

mod common;

use std::io::Read;
use std::process::Stdio;

use common::{Backend, Workspace};

/// A playbook whose run has many events (so its timeline is longer than a pipe read).
const MANY: &str = r#"
name: many
steps:
  - for_each: "{{ range(400) }}"
    as: i
    steps:
      - log: "line {{ i }} of a long timeline that fills the reader's pipe quickly"
"#;

/// Runs clerk with stdout into a pipe whose reader closes after one read.
fn run_into_closed_pipe(ws: &Workspace, args: &[&str]) -> (i32, String) {
    let mut c = ws.cmd();
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn clerk");
    let mut out = child.stdout.take().expect("stdout");
    let mut buf = [0u8; 64];
    let _ = out.read(&mut buf);
    drop(out); // like `| head -c 64`
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    let status = child.wait().expect("wait");
    (status.code().unwrap_or(-1), err)
}

#[test]
fn broken_pipe_ends_quietly() {
    let ws = Workspace::new(Backend::Sqlite);
    ws.write("many.yaml", MANY);
    let v = ws.clerk(&["run", "many.yaml", "--json"]).ok().json();
    let id = v["id"].as_str().unwrap().to_string();
    for args in [
        vec!["runs", "show", id.as_str()],
        vec!["runs", "show", id.as_str(), "--json"],
        vec!["audit", "export"],
        vec!["audit", "export", "--format", "csv"],
    ] {
        let (code, err) = run_into_closed_pipe(&ws, &args);
        assert_eq!(code, 0, "{args:?}: exit {code}, stderr: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn written_files_keep_mode_and_follow_umask() {
    use std::os::unix::fs::PermissionsExt;
    let ws = Workspace::new(Backend::Sqlite);
    ws.write(
        "w.yaml",
        r#"
name: w
steps:
  - file.write: { path: out/new.txt, text: "fresh" }
  - file.write: { path: out/shared.txt, text: "replaced" }
"#,
    );
    let shared = ws.write("out/shared.txt", "old");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o664)).unwrap();
    // The test process's umask is inherited by clerk; read it back.
    let umask = unsafe {
        let m = libc::umask(0o022);
        libc::umask(m);
        m
    };
    ws.clerk(&["run", "w.yaml"]).ok();
    let mode = |p: &str| {
        std::fs::metadata(ws.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(ws.read("out/shared.txt"), "replaced");
    assert_eq!(mode("out/shared.txt"), 0o664, "existing file's mode kept");
    assert_eq!(
        mode("out/new.txt"),
        0o666 & !umask,
        "new file follows umask"
    );
}

#[test]
fn scripts_ask_cargo_for_the_target_directory() {
    let root = env!("CARGO_MANIFEST_DIR");
    let elsewhere = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("bash")
        .args(["-c", ". scripts/lib.sh && target_dir"])
        .current_dir(root)
        .env("CARGO_TARGET_DIR", elsewhere.path())
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        elsewhere.path().display().to_string()
    );
    for script in ["scripts/demo", "scripts/test"] {
        let text = std::fs::read_to_string(format!("{root}/{script}")).unwrap();
        assert!(
            !text.contains("target/debug") && !text.contains("target/release"),
            "{script} assumes ./target"
        );
    }
}

#[test]
fn argument_type_errors_name_the_argument_in_playbook_words() {
    let ws = Workspace::new(Backend::Sqlite);
    ws.write(
        "t.yaml",
        r#"name: t
steps:
  - sheet.read: { path: x.xlsx, max_rows: ten }
  - mail.send: { to: a@example.com, subject: s, text: t, attachments: 5 }
"#,
    );
    let r = ws.clerk(&["validate", "t.yaml"]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    let err = r.stdout();
    assert!(
        err.contains("t.yaml:3:43: `sheet.read`: `max_rows` must be a whole number, got \"ten\""),
        "{err}"
    );
    assert!(
        err.contains("t.yaml:4:71: `mail.send`: `attachments` must be"),
        "{err}"
    );
    assert!(
        !err.contains("untagged enum") && !err.contains("u64"),
        "{err}"
    );
    // At run time (a template rendering to the wrong type) the same words.
    ws.write(
        "r.yaml",
        r#"name: r
steps:
  - sheet.read: { path: x.xlsx, max_rows: "{{ 'ten' }}" }
"#,
    );
    let r = ws.clerk(&["run", "r.yaml"]);
    assert_eq!(r.code(), 1);
    assert!(
        r.stdout()
            .contains("`max_rows` must be a whole number, got \"ten\""),
        "{}",
        r.stdout()
    );
}

/// Runs a playbook in-process on an engine whose secrets come from `secrets_yaml`.
async fn run_in_process(
    ws: &Workspace,
    playbook: &str,
    secrets_yaml: &str,
    inputs: serde_json::Map<String, serde_json::Value>,
) -> clerk::engine::RunOutcome {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;
    std::fs::create_dir_all(ws.path().join(".clerk")).unwrap();
    let f = ws.path().join(".clerk/secrets.yaml");
    std::fs::write(&f, secrets_yaml).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    let secrets = clerk::secrets::Secrets::load(ws.path()).unwrap();
    let store = clerk::store::Store::open(&format!(
        "sqlite://{}",
        ws.path().join(".clerk/clerk.db").display()
    ))
    .await
    .unwrap();
    let engine = clerk::engine::Engine {
        config: Arc::new(clerk::config::Config::default()),
        recorder: clerk::audit::Recorder::new(store, Arc::new(clerk::secrets::redact)),
        secrets: Arc::new(secrets),
    };
    let path = ws.write("p.yaml", playbook);
    let pb = clerk::playbook::load_file(&path, &clerk::actions::Registry).unwrap();
    engine
        .run_now(clerk::engine::RunRequest {
            playbook: Arc::new(pb),
            inputs,
            actor: "test".into(),
            bot: None,
            workspace: ws.path().to_path_buf(),
            cancel: tokio_util::sync::CancellationToken::new(),
            max_runtime: None,
            progress: false,
        })
        .await
        .unwrap()
}

fn run_events(ws: &Workspace, id: &str) -> String {
    common::query(
        ws,
        &format!("SELECT kind, action, detail, error FROM audit_events WHERE run_id = '{id}' ORDER BY seq"),
    )
    .join("\n")
}

#[tokio::test]
async fn masking_is_per_run_and_taint_follows_results() {
    let ws = Workspace::new(Backend::Sqlite);
    // Run 1 uses a secret.
    let one = run_in_process(
        &ws,
        "name: one\nsteps:\n  - log: \"token {{ secrets.token }}\"\n",
        "token: alpha-secret-value\n",
        Default::default(),
    )
    .await;
    let events = run_events(&ws, &one.id);
    assert!(events.contains("token ***"), "{events}");
    assert!(!events.contains("alpha-secret-value"), "{events}");
    // Run 2 does not have that secret: the same characters are ordinary data
    // there (the masker of run 1 was dropped with it).
    let mut inputs = serde_json::Map::new();
    inputs.insert("word".into(), "alpha-secret-value".into());
    let two = run_in_process(
        &ws,
        "name: two\ninputs: { word: { type: string } }\nsteps:\n  - log: \"word {{ inputs.word }}\"\n",
        "other: beta-secret-value\n",
        inputs,
    )
    .await;
    let events = run_events(&ws, &two.id);
    assert!(events.contains("word alpha-secret-value"), "{events}");

    // Taint follows action results: a file read through a secret path is secret.
    ws.write(
        "gamma-secret-dir/data.txt",
        "figures computed from the secret",
    );
    let three = run_in_process(
        &ws,
        "name: three\nsteps:\n  - file.read: { path: \"{{ secrets.dir }}/data.txt\" }\n    save_as: r\n  - log: \"text {{ r.text | upper }}\"\n",
        "dir: gamma-secret-dir\n",
        Default::default(),
    )
    .await;
    assert_eq!(three.status.as_str(), "succeeded", "{:?}", three.error);
    let events = run_events(&ws, &three.id);
    assert!(!events.contains("FIGURES COMPUTED"), "{events}");
    assert!(events.contains("text ***"), "{events}");
    assert_eq!(three.vars["r"], "***");
}
