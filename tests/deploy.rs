//! Deployed versions (issue 17 §1) end to end: real `clerk deploy` and three
//! real `clerk serve` processes, each with its own workspace folder, on one
//! real PostgreSQL database. Waits are deadlines on observable conditions.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, Workspace, query};

fn playbook(text: &str) -> String {
    format!(
        "name: stamp\nsteps:\n  - name: Work\n    wait: 2500ms\n  - name: Stamp\n    file.write: {{ path: \"out/{{{{ run.id }}}}.txt\", text: \"{text}\" }}\n"
    )
}

const BOT: &str = "name: stamp\nplaybook: ../playbooks/stamp.yaml\nschedule: [\"* * * * * *\"]\noverlap: allow\ncatch_up: none\n";

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn sha256(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// A `clerk` command in workspace `dir` on the test's PostgreSQL database.
fn clerk_in(dir: &Path, db: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_clerk"));
    c.arg("--workspace").arg(dir).arg("--db").arg(db);
    c.current_dir(dir);
    c.env_remove("CLERK_DATABASE_URL");
    c.env("RUST_LOG", "clerk=info");
    c
}

fn run_in(dir: &Path, db: &str, args: &[&str]) -> (i32, String, String) {
    let out = clerk_in(dir, db).args(args).output().expect("run clerk");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[track_caller]
fn ok_in(dir: &Path, db: &str, args: &[&str]) -> String {
    let (code, out, err) = run_in(dir, db, args);
    assert_eq!(code, 0, "clerk {args:?}\nstdout:\n{out}\nstderr:\n{err}");
    out
}

struct Serve {
    child: Option<Child>,
    log: PathBuf,
}

impl Serve {
    fn start(dir: &Path, db: &str, host: &str) -> Serve {
        let log = dir.join("serve.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut c = clerk_in(dir, db);
        c.args(["serve", "--grace", "20s", "--hostname", host]);
        c.stdout(Stdio::null()).stderr(file);
        Serve {
            child: Some(c.spawn().expect("start clerk serve")),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(mut self) -> (i32, String) {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return (s.code().unwrap_or(-1), self.log());
            }
            assert!(
                Instant::now() < deadline,
                "clerk serve did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool, logs: impl Fn() -> String) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// (id, worker, status, started_at, deploy_version, playbook_sha256) of the bot's runs.
fn runs(ws: &Workspace, bot: &str) -> Vec<[String; 6]> {
    query(
        ws,
        &format!(
            "SELECT id, COALESCE(worker, ''), status, COALESCE(started_at, ''), \
             COALESCE(CAST(deploy_version AS TEXT), ''), COALESCE(playbook_sha256, '') \
             FROM runs WHERE bot = '{bot}' ORDER BY queued_at"
        ),
    )
    .into_iter()
    .map(|l| {
        let f: Vec<String> = l.split('|').map(str::to_string).collect();
        [
            f[0].clone(),
            f[1].clone(),
            f[2].clone(),
            f[3].clone(),
            f[4].clone(),
            f[5].clone(),
        ]
    })
    .collect()
}

fn deployed_at(ws: &Workspace, version: i64) -> String {
    query(
        ws,
        &format!("SELECT deployed_at FROM deployments WHERE version = {version}"),
    )
    .remove(0)
}

/// Distinct workers that finished a run of `version`.
fn workers_done(ws: &Workspace, version: &str) -> usize {
    let mut w: Vec<String> = runs(ws, "stamp")
        .into_iter()
        .filter(|r| r[4] == version && r[2] == "succeeded")
        .map(|r| r[1].clone())
        .collect();
    w.sort();
    w.dedup();
    w.len()
}

#[test]
fn a_deploy_reaches_every_worker_and_a_stale_folder_never_runs() {
    let a = Workspace::new(Backend::Postgres);
    let db = a.db_url.clone().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    let dirs = [
        a.path().to_path_buf(),
        b.path().to_path_buf(),
        c.path().to_path_buf(),
    ];
    for d in &dirs {
        // One run at a time per worker: the three workers share the load.
        write(d, "clerk.yaml", "max_concurrent_runs: 1\n");
    }
    let (v1, v2, stale) = (playbook("v1"), playbook("v2"), playbook("STALE"));
    write(&dirs[0], "bots/stamp.yaml", BOT);
    write(&dirs[0], "playbooks/stamp.yaml", &v1);
    // Worker B has a stale copy of the playbook and a bot nobody deployed;
    // worker C has no bots folder at all.
    write(&dirs[1], "bots/stamp.yaml", BOT);
    write(&dirs[1], "playbooks/stamp.yaml", &stale);
    write(
        &dirs[1],
        "bots/rogue.yaml",
        "name: rogue\nplaybook: ../playbooks/stamp.yaml\nschedule: [\"* * * * * *\"]\n",
    );
    let out = ok_in(&dirs[0], &db, &["deploy"]);
    assert!(out.contains("deployed version 1"), "{out}");

    // Three "machines": own workspace folder and host name each.
    let serves: Vec<Serve> = dirs
        .iter()
        .zip(["machine-a", "machine-b", "machine-c"])
        .map(|(d, host)| Serve::start(d, &db, host))
        .collect();
    let logs = || {
        serves
            .iter()
            .enumerate()
            .map(|(i, s)| format!("--- serve {i}:\n{}", s.log()))
            .collect::<String>()
    };
    wait_for(
        "every worker to finish a run of version 1",
        Duration::from_secs(90),
        || workers_done(&a, "1") == 3,
        logs,
    );
    let b_log = serves[1].log();
    assert!(
        b_log.contains("differs from deployed version 1") && b_log.contains("playbook_differs"),
        "{b_log}"
    );

    // Edit and deploy while the three workers run.
    write(&dirs[0], "playbooks/stamp.yaml", &v2);
    let out = ok_in(&dirs[0], &db, &["deploy"]);
    assert!(
        out.contains("deployed version 2") && out.contains("changed: stamp"),
        "{out}"
    );
    let t2 = deployed_at(&a, 2);
    // Figure for docs/several-machines.md: deploy → every serve installed it.
    let deployed = Instant::now();
    wait_for(
        "every serve to install version 2",
        Duration::from_secs(30),
        || {
            serves
                .iter()
                .all(|s| s.log().contains("running deployed version 2"))
        },
        logs,
    );
    eprintln!(
        "figure: version 2 installed on all 3 serves {} ms after `clerk deploy` returned",
        deployed.elapsed().as_millis()
    );
    wait_for(
        "every worker to finish a run of version 2",
        Duration::from_secs(90),
        || workers_done(&a, "2") == 3,
        logs,
    );

    // Removing the bot = deploying a set without it.
    std::fs::remove_file(dirs[0].join("bots/stamp.yaml")).unwrap();
    write(
        &dirs[0],
        "bots/other.yaml",
        "name: other\nplaybook: ../playbooks/stamp.yaml\nschedule: [\"0 0 1 1 *\"]\n",
    );
    let out = ok_in(&dirs[0], &db, &["deploy"]);
    assert!(
        out.contains("deployed version 3") && out.contains("removed: stamp"),
        "{out}"
    );
    let t3 = deployed_at(&a, 3);
    // Every serve installs version 3 (its log says so).
    wait_for(
        "every serve to run version 3",
        Duration::from_secs(30),
        || {
            serves
                .iter()
                .all(|s| s.log().contains("running deployed version 3"))
        },
        logs,
    );
    // Firings of the removed bot queued ahead of their time are skipped.
    wait_for(
        "no queued run of the removed bot",
        Duration::from_secs(30),
        || !runs(&a, "stamp").iter().any(|r| r[2] == "queued"),
        logs,
    );
    let mut stopped = Vec::new();
    for s in serves {
        stopped.push(s.stop());
    }
    for (code, log) in &stopped {
        assert_eq!(*code, 0, "{log}");
    }

    let all = runs(&a, "stamp");
    let (sha1, sha2, sha_stale) = (sha256(&v1), sha256(&v2), sha256(&stale));
    let mut by_version = [0usize; 3];
    for [id, worker, status, started, version, sha] in &all {
        assert_ne!(sha, &sha_stale, "run {id} ran the stale local playbook");
        if started.is_empty() || status == "skipped" && version.is_empty() {
            continue;
        }
        // Every run that started after a deploy runs that deploy's version.
        if started.as_str() > t3.as_str() {
            assert_eq!(
                status, "skipped",
                "run {id} of the removed bot started after version 3: {status}"
            );
            continue;
        }
        if started.as_str() > t2.as_str() {
            assert_eq!(
                version, "2",
                "run {id} on {worker} started {started} after version 2 ({t2})"
            );
            assert_eq!(sha, &sha2, "run {id}");
        } else if version == "1" {
            assert_eq!(sha, &sha1, "run {id}");
        }
        if status == "succeeded" {
            // The run wrote its stamp into its own worker's workspace: the
            // version recorded is the version that ran.
            let found: Vec<String> = dirs
                .iter()
                .filter_map(|d| std::fs::read_to_string(d.join(format!("out/{id}.txt"))).ok())
                .collect();
            assert_eq!(
                found,
                [format!("v{version}")],
                "run {id} (version {version})"
            );
            by_version[version.parse::<usize>().unwrap()] += 1;
        }
    }
    assert!(by_version[1] >= 3 && by_version[2] >= 3, "{by_version:?}");
    eprintln!(
        "figure: {} runs ({} of version 1, {} of version 2) on 3 workers, none stale",
        all.len(),
        by_version[1],
        by_version[2]
    );
    // The removed bot: no firing after version 3 ran.
    let late: Vec<_> = query(
        &a,
        &format!(
            "SELECT id, status FROM runs WHERE bot = 'stamp' AND scheduled_for > '{t3}' AND status <> 'skipped'"
        ),
    );
    assert!(
        late.is_empty(),
        "firings of the removed bot after its removal: {late:?}"
    );
    // The rogue bot of the stale folder never ran anywhere.
    assert!(query(&a, "SELECT id FROM runs WHERE bot = 'rogue'").is_empty());
    // Every deployed run says so in the audit trail; B's difference too.
    let with_version = all.iter().filter(|r| !r[4].is_empty()).count();
    let events = query(
        &a,
        "SELECT COUNT(*) FROM audit_events WHERE kind = 'run.deployment'",
    );
    assert_eq!(events, [with_version.to_string()]);
    let hosts = query(
        &a,
        "SELECT DISTINCT detail FROM audit_events WHERE kind = 'run.deployment'",
    );
    for m in ["machine-a", "machine-b", "machine-c"] {
        assert!(
            hosts.iter().any(|d| d.contains(m)),
            "no run.deployment from {m}"
        );
    }
    let differs = query(
        &a,
        "SELECT detail FROM audit_events WHERE kind = 'deploy.local_differs'",
    );
    assert!(
        differs.iter().any(|d| d.contains("playbook_differs")
            && d.contains("rogue")
            && d.contains("machine-b")),
        "{differs:?}"
    );
    assert_eq!(
        query(
            &a,
            "SELECT COUNT(*) FROM audit_events WHERE kind = 'deploy.created'"
        ),
        ["3"]
    );
    ok_in(&dirs[0], &db, &["audit", "verify"]);
}

#[test]
fn history_diff_rollback_and_validation_through_the_cli() {
    let ws = Workspace::new(Backend::Postgres);
    let db = ws.db_url.clone().unwrap();
    let d = ws.path();
    write(d, "bots/stamp.yaml", BOT);
    write(d, "playbooks/stamp.yaml", &playbook("v1"));
    assert!(ok_in(d, &db, &["deploy"]).contains("deployed version 1 — added: stamp"));
    // The same content again: no new version.
    assert!(ok_in(d, &db, &["deploy"]).contains("version 1 already has exactly these bots"));

    write(d, "playbooks/stamp.yaml", &playbook("v2"));
    assert!(ok_in(d, &db, &["deploy"]).contains("deployed version 2 — changed: stamp"));

    // A problem anywhere: nothing deployed, every problem as path:line:col.
    write(
        d,
        "playbooks/stamp.yaml",
        "name: stamp\nsteps:\n  - name: Work\n    wiat: 1s\n",
    );
    write(
        d,
        "bots/bad.yaml",
        "name: bad\nplaybook: ../playbooks/stamp.yaml\nschedule: [\"0 25 * * *\"]\n",
    );
    let (code, out, err) = run_in(d, &db, &["deploy"]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(out.contains("playbooks/stamp.yaml:4:5: "), "{out}");
    assert!(out.contains("bots/bad.yaml:3:"), "{out}");
    assert!(err.contains("nothing was deployed"), "{err}");
    assert_eq!(query(&ws, "SELECT COUNT(*) FROM deployments"), ["2"]);

    // Rollback = deploying version 1's set again.
    let out = ok_in(d, &db, &["deploy", "--from-version", "1"]);
    assert!(
        out.contains("deployed version 3 = the bots of version 1 (rollback)"),
        "{out}"
    );
    let (code, _, err) = run_in(d, &db, &["deploy", "--from-version", "9"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no deployed version 9"), "{err}");

    let hist = ok_in(d, &db, &["bots", "history", "stamp"]);
    let lines: Vec<&str> = hist.lines().collect();
    assert_eq!(lines.len(), 4, "{hist}");
    assert!(
        lines[1].starts_with('1') && lines[1].contains("added"),
        "{hist}"
    );
    assert!(
        lines[2].starts_with('2') && lines[2].contains("playbook changed"),
        "{hist}"
    );
    assert!(lines[3].contains("(rollback to 1)"), "{hist}");
    let json: serde_json::Value =
        serde_json::from_str(&ok_in(d, &db, &["bots", "history", "stamp", "--json"])).unwrap();
    assert_eq!(json[0]["playbook_sha256"], sha256(&playbook("v1")));
    assert_eq!(json[2]["playbook_sha256"], sha256(&playbook("v1")));
    assert_eq!(json[1]["playbook_sha256"], sha256(&playbook("v2")));

    let diff = ok_in(d, &db, &["bots", "diff", "stamp", "1", "2"]);
    assert_eq!(
        diff,
        "--- v1/playbooks/stamp.yaml\n+++ v2/playbooks/stamp.yaml\n@@ -3,4 +3,4 @@\n   - name: Work\n     wait: 2500ms\n   - name: Stamp\n-    file.write: { path: \"out/{{ run.id }}.txt\", text: \"v1\" }\n+    file.write: { path: \"out/{{ run.id }}.txt\", text: \"v2\" }\n"
    );
    let same = ok_in(d, &db, &["bots", "diff", "stamp", "1", "3"]);
    assert!(same.contains("versions 1 and 3 are the same"), "{same}");

    // A run queued while no serve runs (bots run uses the deployed bot)...
    let out = ok_in(d, &db, &["bots", "run", "stamp"]);
    let queued = out.split_whitespace().nth(1).unwrap().to_string();
    // Removing a bot = deploying a set without it; history says so.
    std::fs::remove_file(d.join("bots/bad.yaml")).unwrap();
    std::fs::remove_file(d.join("bots/stamp.yaml")).unwrap();
    write(
        d,
        "bots/other.yaml",
        "name: other\nplaybook: ../playbooks/other.yaml\nschedule: [\"0 0 1 1 *\"]\n",
    );
    write(
        d,
        "playbooks/other.yaml",
        "name: other\nsteps:\n  - log: hi\n",
    );
    assert!(ok_in(d, &db, &["deploy"]).contains("removed: stamp"));
    let hist = ok_in(d, &db, &["bots", "history", "stamp"]);
    assert!(hist.lines().last().unwrap().contains("removed"), "{hist}");
    let diff = ok_in(d, &db, &["bots", "diff", "stamp", "3", "4"]);
    assert!(diff.contains("+++ v4 (bot stamp not deployed)"), "{diff}");
    // ...is skipped by the next serve, which never runs the removed bot.
    let serve = Serve::start(d, &db, "machine-a");
    wait_for(
        "the queued run of the removed bot to be skipped",
        Duration::from_secs(60),
        || {
            query(
                &ws,
                &format!("SELECT status FROM runs WHERE id = '{queued}'"),
            ) == ["skipped"]
        },
        || serve.log(),
    );
    let (code, log) = serve.stop();
    assert_eq!(code, 0, "{log}");
    // `bots list` shows the deployed set, not a folder.
    let list = ok_in(d, &db, &["bots", "list"]);
    assert!(list.contains("other") && !list.contains("stamp"), "{list}");
    ok_in(d, &db, &["audit", "verify"]);
}
