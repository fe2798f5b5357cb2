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

#[test]
fn data_chosen_paths_cannot_leave_the_workspace() {
    let outer = tempfile::tempdir().unwrap();
    let ws = Workspace::new(Backend::Sqlite);
    // A spreadsheet-like list whose cell holds `../../escape`.
    let escape_dir = ws
        .path()
        .parent()
        .unwrap()
        .join(format!("clerk-escape-{}", std::process::id()));
    let rel_escape = format!(
        "../../{}/escaped",
        escape_dir.file_name().unwrap().to_string_lossy()
    );
    ws.write("names.csv", &format!("name\nfine\n{rel_escape}\n"));
    ws.write(
        "p.yaml",
        r#"name: p
steps:
  - sheet.read: { path: names.csv }
    save_as: sheet
  - for_each: "{{ sheet.rows }}"
    as: row
    steps:
      - file.write: { path: "out/{{ row.name }}.txt", text: "hello" }
"#,
    );
    let r = ws.clerk(&["run", "p.yaml", "--json"]);
    assert_eq!(r.code(), 1, "{}", r.stdout());
    let v = r.json();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("path `out/{rel_escape}.txt`")),
        "{msg}"
    );
    assert!(msg.contains("outside the workspace"), "{msg}");
    assert!(msg.contains("allowed_roots"), "{msg}");
    assert_eq!(ws.read("out/fine.txt"), "hello");
    assert!(
        !escape_dir.exists(),
        "a file was written outside the workspace"
    );

    // Absolute paths and copies out are refused too; a symlink out as well.
    std::os::unix::fs::symlink(outer.path(), ws.path().join("link")).unwrap();
    for step in [
        format!(
            "file.write: {{ path: {}/x.txt, text: t }}",
            outer.path().display()
        ),
        "file.copy: { from: names.csv, to: ../x.csv }".to_string(),
        "file.write: { path: link/x.txt, text: t }".to_string(),
        "file.read: { path: /etc/hostname }".to_string(),
    ] {
        ws.write("q.yaml", &format!("name: q\nsteps:\n  - {step}\n"));
        let r = ws.clerk(&["run", "q.yaml"]);
        assert_eq!(r.code(), 1, "{step}: {}", r.stdout());
        assert!(
            r.stdout().contains("outside the workspace"),
            "{step}: {}",
            r.stdout()
        );
    }
    assert_eq!(std::fs::read_dir(outer.path()).unwrap().count(), 0);

    // clerk.yaml can allow a folder outside.
    ws.write(
        "clerk.yaml",
        &format!("allowed_roots: [{}]\n", outer.path().display()),
    );
    ws.write(
        "q.yaml",
        "name: q\nsteps:\n  - file.write: { path: link/x.txt, text: t }\n",
    );
    ws.clerk(&["run", "q.yaml"]).ok();
    assert_eq!(
        std::fs::read_to_string(outer.path().join("x.txt")).unwrap(),
        "t"
    );
}

/// Runs clerk and returns (exit code, stdout, peak RSS of that process in KiB).
/// The child is reaped by `wait4` (which also gives its resource usage).
#[allow(clippy::zombie_processes)]
fn run_measured(ws: &Workspace, args: &[&str]) -> (i32, String, i64, std::time::Duration) {
    let mut c = ws.cmd();
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::null());
    let started = std::time::Instant::now();
    let mut child = c.spawn().expect("spawn clerk");
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("stdout");
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child and fills a zeroed rusage.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4");
    let elapsed = started.elapsed();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, out, usage.ru_maxrss, elapsed)
}

#[test]
fn hostile_workbooks_fail_fast_within_limits() {
    let ws = Workspace::new(Backend::Sqlite);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/hostile_xlsx.py");
    for (kind, expected) in [
        (
            "string",
            "decompresses to 1.0 GiB (declared), over the limit of 512.0 MiB (`max_sheet_bytes`)",
        ),
        ("rows", "over the limit of 512.0 MiB (`max_sheet_bytes`)"),
        (
            "cell",
            "cell A1 of bomb-cell.xlsx holds 4194304 bytes of text, over the limit of 1048576 (`max_cell_bytes`)",
        ),
    ] {
        let file = ws.path().join(format!("bomb-{kind}.xlsx"));
        let made = std::process::Command::new("python3")
            .arg(script)
            .arg(&file)
            .arg(kind)
            .status()
            .expect("python3");
        assert!(made.success());
        let size = std::fs::metadata(&file).unwrap().len();
        assert!(size < 3 << 20, "{kind}: the hostile file is {size} bytes");
        ws.write(
            &format!("{kind}.yaml"),
            &format!("name: h\nsteps:\n  - sheet.read: bomb-{kind}.xlsx\n"),
        );
        let (code, out, rss_kb, took) = run_measured(&ws, &["run", &format!("{kind}.yaml")]);
        eprintln!(
            "hostile xlsx `{kind}` ({size} bytes): exit {code} after {:.2} s, peak RSS {} MiB",
            took.as_secs_f64(),
            rss_kb / 1024
        );
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(expected), "{kind}: {out}");
        assert!(rss_kb < 300 * 1024, "{kind}: peak RSS {rss_kb} KiB");
    }
    // A trusted file may raise the limit on the step.
    ws.write(
        "cell-ok.yaml",
        "name: h\nsteps:\n  - sheet.read: { path: bomb-cell.xlsx, header: false, max_cell_bytes: 8388608 }\n    save_as: s\n  - assert: { that: \"{{ s.rows[0][0] | length == 4194304 }}\" }\n",
    );
    ws.clerk(&["run", "cell-ok.yaml"]).ok();
    // A CSV field over the cell limit.
    let big = "x".repeat(2 << 20);
    ws.write("long.csv", &format!("a,b\n1,{big}\n"));
    ws.write("csv.yaml", "name: c\nsteps:\n  - sheet.read: long.csv\n");
    let r = ws.clerk(&["run", "csv.yaml"]);
    assert_eq!(r.code(), 1);
    assert!(
        r.stdout()
            .contains("long.csv: the field in column 2 of line 2 holds 2097152 bytes"),
        "{}",
        r.stdout()
    );
}

#[test]
fn an_smtp_server_that_never_answers_fails_the_attempt_within_its_deadline() {
    use std::net::TcpListener;
    // Accepts connections and never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            keep.lock().unwrap().push(conn);
        }
    });
    let ws = Workspace::new(Backend::Sqlite);
    ws.write(
        "clerk.yaml",
        &format!(
            "mail:\n  transport: smtp\n  smtp: {{ host: 127.0.0.1, port: {port}, timeout: 1s }}\n"
        ),
    );
    ws.write(
        "m.yaml",
        "name: m\nsteps:\n  - mail.send: { to: a@example.com, subject: s, text: t }\n    retry: { attempts: 2, delay: 100ms }\n",
    );
    let mut child = ws
        .cmd()
        .args(["run", "m.yaml", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let deadline = started + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mail.send still hanging after 60 s against a silent SMTP server");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    eprintln!(
        "silent SMTP server: the run ended after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(status.code(), Some(1));
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = v["id"].as_str().unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("did not finish within 4s"), "{msg}");
    let attempts = common::query(
        &ws,
        &format!(
            "SELECT error FROM audit_events WHERE run_id = '{id}' AND action = 'mail.send' AND outcome = 'failed'"
        ),
    );
    assert_eq!(attempts.len(), 2, "both attempts audited: {attempts:?}");
    assert!(held.lock().unwrap().len() >= 2, "each attempt connected");
}

/// A count from the workspace's SQLite store, or None while it does not exist yet.
fn try_count(ws: &Workspace, q: &str) -> Option<i64> {
    let out = std::process::Command::new("sqlite3")
        .arg(ws.path().join(".clerk/clerk.db"))
        .arg(q)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Waits until `cond` holds, polling, or panics after `limit` naming `what`.
fn wait_for(what: &str, limit: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn run_statuses(ws: &Workspace, tmp: &std::path::Path) -> Vec<(String, String)> {
    let mut c = ws.cmd();
    c.args(["runs", "list", "--json"]).env("TMPDIR", tmp);
    let out = c.output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        r["id"].as_str().unwrap_or_default().to_string(),
                        r["status"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn profile_dirs(tmp: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(tmp)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("clerk-browser-"))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_killed_run_is_marked_interrupted_and_its_browser_profile_removed() {
    let ws = Workspace::new(Backend::Sqlite);
    let tmp = ws.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    ws.write(
        "slow.yaml",
        "name: slow\nsteps:\n  - browser.open: \"data:text/html,<p>hello</p>\"\n  - wait: 120s\n",
    );
    let mut c = ws.cmd();
    c.args(["run", "slow.yaml"])
        .env("TMPDIR", &tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    // The run is running once its browser is open (the wait step has begun).
    wait_for(
        "the run to open its browser",
        std::time::Duration::from_secs(60),
        || {
            !profile_dirs(&tmp).is_empty()
                && try_count(
                    &ws,
                    "SELECT count(*) FROM audit_events WHERE kind = 'action' AND action = 'browser.open'",
                ) == Some(1)
        },
    );
    let runs = run_statuses(&ws, &tmp);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].1, "running", "a live run is not judged dead");
    let id = runs[0].0.clone();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(
        profile_dirs(&tmp).len(),
        1,
        "kill -9 leaves the profile folder"
    );

    // The next clerk command notices.
    let runs = run_statuses(&ws, &tmp);
    assert_eq!(runs, vec![(id.clone(), "interrupted".to_string())]);
    assert!(
        profile_dirs(&tmp).is_empty(),
        "the stale profile folder was removed"
    );
    let show = ws.clerk(&["runs", "show", &id, "--json"]).ok().json();
    let ev = show["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "run.interrupted")
        .expect("a run.interrupted event");
    assert!(ev["error"].as_str().unwrap().contains("is gone"), "{ev}");
    ws.clerk(&["audit", "verify"]).ok();
}

#[test]
fn sighup_cancels_the_run_like_sigterm() {
    let ws = Workspace::new(Backend::Sqlite);
    ws.write(
        "w.yaml",
        "name: w\nsteps:\n  - log: started\n  - wait: 120s\n",
    );
    let mut child = ws
        .cmd()
        .args(["run", "w.yaml", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        "the run to start",
        std::time::Duration::from_secs(30),
        || {
            try_count(
                &ws,
                "SELECT count(*) FROM audit_events WHERE action = 'log'",
            ) == Some(1)
        },
    );
    // SAFETY: signals our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGHUP);
    }
    let status = child.wait().unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"], "cancelled");
}

#[test]
fn validate_checks_filter_test_and_method_names() {
    let ws = Workspace::new(Backend::Sqlite);
    ws.write(
        "t.yaml",
        "name: t\nsteps:\n  - log: \"{{ [1, 2] | combine }}\"\n  - log: \"{{ 'abc'.startswith('a') }}\"\n  - log: \"{{ 'abc' is sting }}\"\n  - log: \"{{ [1] | lenght }} and {{ 'ok' | upper }}\"\n",
    );
    let r = ws.clerk(&["validate", "t.yaml"]);
    assert_eq!(r.code(), 2);
    let out = r.stdout();
    for expected in [
        "t.yaml:3:10: unknown filter `| combine`",
        "t.yaml:4:10: unknown method `.startswith()` (write `x is startingwith('a')`)",
        "t.yaml:5:10: unknown test `is sting` (did you mean `string`?)",
        "t.yaml:6:10: unknown filter `| lenght` (did you mean `length`?)",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert_eq!(out.lines().count(), 4, "{out}");
}

/// A small tmpfs mounted on a folder (root only), unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_under_the_store_fails_the_run_and_says_so() {
    let ws = Workspace::new(Backend::Sqlite);
    // `.clerk` (the SQLite store) on a 2 MiB tmpfs; the run's events fill it.
    let Some(_fs) = Tmpfs::mount(&ws.path().join(".clerk"), "2m") else {
        panic!("this test needs to mount a tmpfs (run it as root, as scripts/test does in CI)");
    };
    ws.write(
        "big.yaml",
        "name: big\nsteps:\n  - for_each: \"{{ range(200) }}\"\n    as: i\n    steps:\n      - log: \"{{ 'event text that fills the store ' * 1000 }}\"\n",
    );
    let r = ws.clerk(&["run", "big.yaml", "--json"]);
    assert_eq!(r.code(), 1, "{}\n{}", r.stdout(), r.stderr());
    let v = r.json();
    assert_eq!(v["status"], "failed", "{v:#}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("no space left on device"), "{msg}");
    let list = ws.clerk(&["runs", "list", "--json"]).ok().json();
    assert_eq!(list[0]["status"], "failed", "{list:#}");
    assert!(
        list[0]["error"]
            .as_str()
            .unwrap()
            .contains("no space left on device"),
        "{list:#}"
    );
}

#[test]
fn action_examples_run_as_printed() {
    let ws = Workspace::new(Backend::Sqlite);
    // The files the examples name.
    ws.write("notes.txt", "a note\n");
    ws.write("a.txt", "a\n");
    ws.write("inbox/a.txt", "in the inbox\n");
    ws.write("fixtures/one.txt", "1\n");
    ws.write("out/old.txt", "old\n");
    ws.write(
        "setup.yaml",
        "name: setup\nsteps:\n  - sheet.write: { path: exports/requests.xlsx, sheet: Requests, rows: [{ id: 1, name: Ana }] }\n  - sheet.write: { path: out/renewals.xlsx, rows: [{ id: 1 }] }\n  - sheet.write: { path: out/report.xlsx, rows: [{ id: 1 }] }\n",
    );
    ws.clerk(&["run", "setup.yaml"]).ok();
    let list = ws.clerk(&["actions", "--json"]).ok().json();
    let mut ran = Vec::new();
    let mut not_run = Vec::new();
    for action in list.as_array().unwrap() {
        let name = action["name"].as_str().unwrap();
        if name.starts_with("browser.") {
            // Run by `browser_action_examples_run_as_printed` (a browser each).
            not_run.push(name.to_string());
            continue;
        }
        if matches!(
            name,
            "mail.fetch" | "mail.move" | "mail.flag" | "mail.delete"
        ) {
            // They need an IMAP server; tests/imap.rs runs them against dovecot.
            not_run.push(name.to_string());
            continue;
        }
        // What `clerk actions NAME` prints is what is pasted.
        let shown = ws.clerk(&["actions", name, "--json"]).ok().json();
        let example = shown["example"]
            .as_str()
            .or_else(|| shown[0]["example"].as_str())
            .unwrap_or_else(|| panic!("{name}: no example in {shown}"))
            .to_string();
        assert!(
            !example.contains("{{ false }}"),
            "{name}: example never runs:\n{example}"
        );
        let indented: String = example.lines().map(|l| format!("  {l}\n")).collect();
        let file = format!("example-{name}.yaml");
        ws.write(
            &file,
            &format!("name: example\ninputs:\n  source: {{ type: string, default: notes.txt }}\nsteps:\n{indented}"),
        );
        let r = ws.clerk(&["run", &file, "--json"]);
        assert_eq!(
            r.code(),
            0,
            "{name}: the example fails:\n{example}\n{}",
            r.stdout()
        );
        ran.push(name.to_string());
    }
    eprintln!("examples run: {ran:?}\nnot run here (browser, IMAP): {not_run:?}");
    assert!(ran.len() >= 16, "{ran:?}");
}

/// Every `browser.*` example, as `clerk actions NAME --json` prints it, runs
/// as its own playbook in real headless Chromium: each opens the page it
/// works on (a `data:` URL), so it needs no server.
#[test]
fn browser_action_examples_run_as_printed() {
    let ws = Workspace::new(Backend::Sqlite);
    // The file the upload example attaches.
    ws.write("fixtures/hello.txt", "hello\n");
    let list = ws.clerk(&["actions", "--json"]).ok().json();
    let mut ran = Vec::new();
    for action in list.as_array().unwrap() {
        let name = action["name"].as_str().unwrap();
        if !name.starts_with("browser.") {
            continue;
        }
        let shown = ws.clerk(&["actions", name, "--json"]).ok().json();
        let example = shown["example"]
            .as_str()
            .or_else(|| shown[0]["example"].as_str())
            .unwrap_or_else(|| panic!("{name}: no example in {shown}"))
            .to_string();
        assert!(
            !example.contains("{{ false }}"),
            "{name}: example never runs:\n{example}"
        );
        assert!(
            example.contains(&format!("- {name}:")),
            "{name}: the example does not use it:\n{example}"
        );
        let indented: String = example.lines().map(|l| format!("  {l}\n")).collect();
        let file = format!("example-{name}.yaml");
        ws.write(&file, &format!("name: example\nsteps:\n{indented}"));
        let r = ws.clerk(&["run", &file, "--json"]);
        assert_eq!(
            r.code(),
            0,
            "{name}: the example fails:\n{example}\n{}\n{}",
            r.stdout(),
            r.stderr()
        );
        ran.push(name.to_string());
    }
    eprintln!("browser examples run: {ran:?}");
    assert!(ran.len() >= 22, "{ran:?}");
    // What they did is there: the download's copy, the screenshot.
    assert!(ws.path().join("out/cases.csv").exists());
    assert!(ws.path().join("out/confirmation.png").exists());
}
