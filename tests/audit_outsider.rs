//! The audit trail as an outsider sees it: a real run's export verified by
//! docs/verify_export.py (Python's standard library only) and by `clerk
//! audit verify --export`, offline; both must agree that the untouched export
//! is intact and that an edited or truncated one is not. Also the CLI's
//! verify over the store (exit codes, checkpoints, runs table).

mod common;

use std::process::Command;

use common::{Backend, Workspace};

const PLAYBOOK: &str = r#"name: outsider
description: Values an outside canonicaliser must get exactly right.
steps:
  - name: Awkward values
    set:
      ratio: 0.1
      tiny: 0.0000001
      big: 1.0e21
      whole: 3.0
      huge: 1152921504606846976
      text: "Zoë 😀 \"quoted\"\ttab \u0001 </script>"
      ключ: 1
  - log: "café ✓ {{ ratio * 3 }}"
  - file.write: { path: out/a.txt, text: "Ünïcode\n" }
  - file.read: out/a.txt
"#;

fn script(args: &[&str]) -> (i32, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/verify_export.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn setup() -> (Workspace, String) {
    let ws = Workspace::new(Backend::Sqlite);
    ws.write("playbooks/outsider.yaml", PLAYBOOK);
    let public = ws
        .clerk(&["audit", "keygen"])
        .ok()
        .stdout()
        .trim()
        .to_string();
    assert_eq!(public.len(), 64);
    assert_eq!(
        ws.clerk(&["audit", "pubkey"]).ok().stdout().trim(),
        public,
        "pubkey prints the key keygen made"
    );
    ws.clerk(&["run", "playbooks/outsider.yaml"]).ok();
    ws.clerk(&["audit", "export", "--out", "export.jsonl"]).ok();
    (ws, public)
}

#[test]
fn outsider_script_verifies_a_real_export_and_catches_edits() {
    let (ws, public) = setup();
    let export = ws.path().join("export.jsonl");
    let text = ws.read("export.jsonl");
    // The awkward values really are in the export.
    for needle in [
        "0.1",
        "1e-7",
        "1e+21",
        "Zoë 😀",
        "ключ",
        "\\u0001",
        "\"hash_format\":2",
    ] {
        assert!(text.contains(needle), "export lacks {needle}: {text}");
    }
    let cps = ws.path().join(".clerk/checkpoints.jsonl");
    let (e, cps) = (export.to_str().unwrap(), cps.to_str().unwrap());
    let n = text.lines().count();

    let (code, out) = script(&[e, "--checkpoints", cps, "--pubkey", &public]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.trim(),
        format!("ok: {n} events verified, 1 checkpoints")
    );
    // clerk agrees, offline.
    let run = ws.clerk(&["audit", "verify", "--export", e, "--checkpoints", cps]);
    assert_eq!(run.code(), 0, "{}", run.stdout());
    assert!(
        run.stdout()
            .starts_with(&format!("ok: {n} events verified"))
    );

    // An edited value.
    let edited = ws.write("edited.jsonl", &text.replacen("Zoë", "Zoe", 1));
    let line = text
        .lines()
        .position(|l| l.contains("Zoë"))
        .expect("the value is in some event")
        + 1;
    let (code, out) = script(&[edited.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out.trim(),
        format!("tampered: event {line}: hash does not match its content (edited?)")
    );
    let run = ws.clerk(&["audit", "verify", "--export", edited.to_str().unwrap()]);
    assert_eq!(run.code(), 1);
    assert_eq!(
        run.stdout().trim(),
        format!("tampered: event {line}: hash does not match its content (edited?)")
    );

    // A truncated tail: only the checkpoints can tell.
    let kept: Vec<&str> = text.lines().take(n - 3).collect();
    let cut = ws.write("cut.jsonl", &(kept.join("\n") + "\n"));
    let (code, out) = script(&[cut.to_str().unwrap()]);
    assert_eq!(code, 0, "the chain alone links: {out}");
    let (code, out) = script(&[cut.to_str().unwrap(), "--checkpoints", cps]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("is not in the export (truncated?)"), "{out}");
    let run = ws.clerk(&[
        "audit",
        "verify",
        "--export",
        cut.to_str().unwrap(),
        "--checkpoints",
        cps,
    ]);
    assert_eq!(run.code(), 1);
    assert!(run.stdout().contains("tail truncated"), "{}", run.stdout());

    // Checked against another installation's key, the signatures fail.
    let other = Workspace::new(Backend::Sqlite);
    let other_key = other
        .clerk(&["audit", "keygen"])
        .ok()
        .stdout()
        .trim()
        .to_string();
    let (code, out) = script(&[e, "--checkpoints", cps, "--pubkey", &other_key]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("signature does not verify"), "{out}");
}

#[test]
fn cli_verify_checks_runs_checkpoints_and_reports_exit_codes() {
    let (ws, _) = setup();
    let ok = ws.clerk(&["audit", "verify"]);
    assert_eq!(ok.code(), 0, "{}", ok.stdout());
    assert!(
        ok.stdout().contains("1 runs, 1 checkpoints"),
        "{}",
        ok.stdout()
    );
    let json = ws.clerk(&["audit", "verify", "--json"]).json();
    assert_eq!(json["runs_checked"], 1);
    assert_eq!(json["checkpoints_checked"], 1);

    // The run ended with a checkpoint: nothing new to cover.
    assert_eq!(
        ws.clerk(&["audit", "checkpoint"]).ok().stdout().trim(),
        "nothing new to checkpoint"
    );
    // A run without its end-of-run checkpoint (configured off), then a
    // manual one: appended to the file and the chain.
    ws.clerk_env(
        &["run", "playbooks/outsider.yaml"],
        &[("CLERK_AUDIT_CHECKPOINT_AFTER_RUN", "false")],
    )
    .ok();
    assert_eq!(ws.read(".clerk/checkpoints.jsonl").lines().count(), 1);
    let cp = ws.clerk(&["audit", "checkpoint", "--json"]).ok().json();
    assert_eq!(cp["format"], "clerk-checkpoint/1");
    assert_eq!(cp["signature"].as_str().map(str::len), Some(128));
    assert_eq!(ws.read(".clerk/checkpoints.jsonl").lines().count(), 2);
    let ok = ws.clerk(&["audit", "verify"]);
    assert_eq!(ok.code(), 0, "{}", ok.stdout());
    assert!(
        ok.stdout().contains("2 runs, 2 checkpoints"),
        "{}",
        ok.stdout()
    );

    // The run's status flipped in the table.
    common::sql(
        &ws,
        "UPDATE runs SET status = 'failed' WHERE id = (SELECT MIN(id) FROM runs)",
    );
    let bad = ws.clerk(&["audit", "verify"]);
    assert_eq!(bad.code(), 1);
    assert!(
        bad.stdout().starts_with("tampered: run ")
            && bad
                .stdout()
                .contains("status is failed in runs but succeeded in the chain"),
        "{}",
        bad.stdout()
    );
    common::sql(
        &ws,
        "UPDATE runs SET status = 'succeeded' WHERE id = (SELECT MIN(id) FROM runs)",
    );
    assert_eq!(ws.clerk(&["audit", "verify"]).code(), 0);

    // The last events deleted: caught through the default checkpoint file,
    // not without it.
    common::sql(
        &ws,
        "DELETE FROM audit_events WHERE id > (SELECT MAX(id) - 4 FROM audit_events)",
    );
    let unchecked = ws.clerk(&["audit", "verify", "--no-checkpoints"]);
    assert!(
        !unchecked.stdout().contains("checkpoint"),
        "{}",
        unchecked.stdout()
    );
    let bad = ws.clerk(&["audit", "verify"]);
    assert_eq!(bad.code(), 1);
    assert!(bad.stdout().contains("tail truncated"), "{}", bad.stdout());
}

#[test]
fn serve_writes_periodic_checkpoints() {
    let ws = Workspace::new(Backend::Sqlite);
    ws.write("playbooks/outsider.yaml", PLAYBOOK);
    std::fs::create_dir_all(ws.path().join("bots")).unwrap();
    ws.clerk(&["audit", "keygen"]).ok();
    ws.clerk_env(
        &["run", "playbooks/outsider.yaml"],
        &[("CLERK_AUDIT_CHECKPOINT_AFTER_RUN", "false")],
    )
    .ok();
    let cps = ws.path().join(".clerk/checkpoints.jsonl");
    assert!(
        !cps.exists(),
        "no end-of-run checkpoint when configured off"
    );

    let log = std::fs::File::create(ws.path().join("serve.log")).unwrap();
    let mut serve = ws.cmd();
    serve
        .args(["serve", "--bots", "bots"])
        .env("CLERK_AUDIT_CHECKPOINT_EVERY", "1s")
        .stdout(std::process::Stdio::null())
        .stderr(log);
    let mut child = serve.spawn().expect("start clerk serve");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::read_to_string(&cps)
        .unwrap_or_default()
        .lines()
        .count()
        < 1
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no periodic checkpoint: {}",
            ws.read("serve.log")
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", ws.read("serve.log"));
    let text = ws.read(".clerk/checkpoints.jsonl");
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert!(first["signature"].is_string(), "{first}");
    let ok = ws.clerk(&["audit", "verify"]);
    assert_eq!(ok.code(), 0, "{}", ok.stdout());
    let export = ws.clerk(&["audit", "export"]).ok().stdout();
    assert!(
        export.contains("\"reason\":\"serve\""),
        "the chained checkpoint says it came from serve: {export}"
    );
}
