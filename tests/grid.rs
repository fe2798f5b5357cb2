//! clerk with a real Selenium Grid 4 as its browser pool (`browser.webdriver_url`):
//! the flagship job through the Grid, a download that only the Grid's
//! managed-downloads API can deliver, sessions closed on every exit path and
//! — after a `kill -9` of clerk — by the next clerk start.
//!
//! Needs Java (`default-jre-headless`), `npm` (the Selenium server jar),
//! Chromium and chromedriver: `scripts/test` installs them.

mod common;
#[path = "support/grid.rs"]
mod grid;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::flagship;
use common::portal::Portal;
use common::{Backend, Run, Workspace};
use grid::Grid;
use serde_json::Value;

/// Points the workspace's clerk.yaml at the Grid (keeping what it had).
fn use_grid(ws: &Workspace, grid: &Grid, extra: &str) {
    let path = ws.path().join("clerk.yaml");
    let mut yaml = std::fs::read_to_string(&path).unwrap_or_default();
    yaml.push_str(&format!("browser:\n  webdriver_url: {}\n{extra}", grid.url));
    std::fs::write(path, yaml).expect("write clerk.yaml");
}

/// The Grid holds no session. It lists a session for a moment after the
/// DELETE that ended it was answered, so this waits (with a deadline) for
/// the list to empty rather than reading it once.
fn assert_no_sessions(grid: &Grid) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let open = grid.sessions();
        if open.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Grid sessions left open: {open:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn records(ws: &Workspace) -> Vec<String> {
    std::fs::read_dir(ws.path().join(".clerk/grid-sessions"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default()
}

const LOGIN: &str = r#"  - browser.open: "{{ inputs.portal }}/login"
  - browser.fill: { label: "User name", value: demo }
  - browser.fill: { label: "Password", value: demo }
  - browser.click: { text: "Sign in" }
  - browser.wait_for: { text: "Main menu" }
"#;

fn run_playbook(ws: &Workspace, playbook: &str, portal: &Portal) -> Run {
    ws.clerk(&[
        "run",
        playbook,
        "--json",
        "--input",
        &format!("portal={}", portal.url),
    ])
}

/// The flagship job through the Grid enters and rejects exactly what it does
/// locally; the session is the Grid's, the resolver was preinstalled through
/// the Grid's DevTools bridge, and the session is closed when the run ends.
#[test]
fn flagship_through_the_grid_enters_and_rejects_as_locally() {
    let grid = Grid::start();
    let portal = flagship::portal();
    let ws = flagship::workspace(Backend::Sqlite);
    use_grid(&ws, &grid, "");
    let started = Instant::now();
    let r = ws.clerk_env(
        &[
            "run",
            "playbooks/parking-permits.yaml",
            "--input",
            &format!("portal_url={}", portal.url),
            "--json",
        ],
        &[
            ("CLERK_SECRET_PORTAL_USER", flagship::PORTAL_USER),
            ("CLERK_SECRET_PORTAL_PASSWORD", flagship::PORTAL_PASSWORD),
        ],
    );
    let took = started.elapsed();
    assert_eq!(
        r.code(),
        0,
        "the flagship run through the Grid failed\nstdout: {}\nstderr: {}\nGrid log:\n{}",
        r.stdout(),
        r.stderr(),
        grid.log_tail(20)
    );
    let run = r.json();
    let summary = &run["vars"]["summary"];
    assert_eq!(summary["entered"], 36, "summary: {summary}");
    assert_eq!(summary["rejected"], 4, "summary: {summary}");
    assert_eq!(summary["failed"], 0, "summary: {summary}");
    assert_eq!(
        portal.cases().len(),
        36,
        "the portal holds the 36 valid requests"
    );
    for (id, reason) in flagship::REJECTIONS {
        assert!(
            r.stdout().contains(reason),
            "{id}: the portal's reason {reason:?} is in the run's output"
        );
    }
    // The browser was the Grid's (one session started there), and nothing
    // fell back to sending the resolver by script.
    assert_eq!(grid.slots_used(), 1, "one Grid session for the run");
    let stderr = r.stderr();
    assert!(
        stderr.contains("remote browser session opened") && stderr.contains("grid=true"),
        "{stderr}"
    );
    assert!(!stderr.contains("DevTools is not reachable"), "{stderr}");
    // Closed when the run ended: the Grid holds no session, clerk no record.
    assert_no_sessions(&grid);
    assert!(records(&ws).is_empty(), "{:?}", records(&ws));
    eprintln!("flagship through the Grid: {:.1} s", took.as_secs_f64());
}

/// A download on the Grid node (whose download folder is the node's own,
/// in a temp folder clerk is never told about) reaches the run's artifacts
/// through the Grid's managed-downloads API.
#[test]
fn a_download_through_the_grid_lands_in_the_artifacts() {
    let grid = Grid::start();
    let portal = Portal::start(&[]);
    let ws = Workspace::new(Backend::Sqlite);
    use_grid(&ws, &grid, "");
    // The documented example, as shipped.
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/portal-export.yaml"),
        ws.path().join("portal-export.yaml"),
    )
    .expect("copy the example playbook");
    let r = ws.clerk_env(
        &[
            "run",
            "portal-export.yaml",
            "--json",
            "--input",
            &format!("portal={}", portal.url),
        ],
        &[("CLERK_SECRET_PORTAL_PASSWORD", "demo")],
    );
    let v = r.json();
    assert_eq!(
        v["status"],
        "succeeded",
        "{}\n{}\nGrid log:\n{}",
        r.stdout(),
        r.stderr(),
        grid.log_tail(20)
    );
    let run_id = v["id"].as_str().expect("run id");
    let kept = ws
        .path()
        .join(".clerk/artifacts")
        .join(run_id)
        .join("downloads/cases.csv");
    let csv = std::fs::read_to_string(&kept)
        .unwrap_or_else(|e| panic!("{} is missing: {e}", kept.display()));
    assert!(
        csv.starts_with("Reference,Request id,Applicant name"),
        "{csv}"
    );
    assert_eq!(ws.read("out/cases-export.csv"), csv);
    assert_eq!(v["vars"]["export"]["name"], "cases.csv");
    assert_eq!(v["vars"]["export"]["size"], csv.len());
    // ... and the audit event records the file clerk got back.
    let events = ws
        .clerk(&["audit", "export", "--run", run_id])
        .ok()
        .stdout();
    let download = events
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["action"] == "browser.download")
        .expect("a browser.download event");
    assert_eq!(download["outcome"], "ok", "{download}");
    assert_eq!(download["detail"]["file"], "cases.csv", "{download}");
    assert_no_sessions(&grid);

    // While a session is open, its download is in the node's own folder
    // (the node deletes it with the session): a run that downloads and then
    // waits, ended with SIGTERM — which also closes its Grid session.
    ws.write(
        "export-and-wait.yaml",
        &format!(
            "name: export-and-wait\ninputs:\n  portal: {{ type: string }}\nsteps:\n{LOGIN}  - browser.download: {{ text: \"Export CSV\" }}\n  - wait: 10m\n"
        ),
    );
    let mut child = ws
        .cmd()
        .args(["run", "export-and-wait.yaml", "--input"])
        .arg(format!("portal={}", portal.url))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start clerk run");
    let artifacts = ws.path().join(".clerk/artifacts");
    let started = Instant::now();
    let fetched = loop {
        let found: Vec<_> = grid::find_files(&artifacts, "cases.csv")
            .into_iter()
            .filter(|p| p != &kept)
            .collect();
        if let Some(p) = found.first() {
            break p.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the second run's download did not arrive"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let on_node = grid::find_files(&grid.node_tmp(), "cases.csv");
    assert_eq!(on_node.len(), 1, "saved on the node: {on_node:?}");
    assert!(!on_node[0].starts_with(ws.path()));
    // Written atomically by clerk, so complete once it exists.
    assert_eq!(
        std::fs::read(&on_node[0]).expect("read the node's file"),
        std::fs::read(&fetched).expect("read clerk's copy")
    );
    assert_eq!(grid.sessions().len(), 1);
    // SAFETY: sends SIGTERM to the clerk child this test started.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "clerk did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Closed by clerk itself on the way out, not by a later start.
    assert_no_sessions(&grid);
    assert!(records(&ws).is_empty(), "{:?}", records(&ws));
}

/// A Grid without managed downloads: the download step says what to change.
#[test]
fn a_grid_without_managed_downloads_is_named_in_the_error() {
    let grid = Grid::start_with(grid::Options {
        managed_downloads: false,
        ..Default::default()
    });
    let portal = Portal::start(&[]);
    let ws = Workspace::new(Backend::Sqlite);
    use_grid(&ws, &grid, "");
    ws.write(
        "export.yaml",
        &format!(
            "name: export\ninputs:\n  portal: {{ type: string }}\nsteps:\n{LOGIN}  - browser.open: \"{{{{ inputs.portal }}}}/\"\n  - browser.download: {{ text: \"Export CSV\" }}\n"
        ),
    );
    let r = run_playbook(&ws, "export.yaml", &portal);
    assert_ne!(r.code(), 0, "{}", r.stdout());
    let out = r.stdout() + &r.stderr();
    assert!(
        out.contains("does not offer managed downloads")
            && out.contains("--enable-managed-downloads true"),
        "{out}"
    );
    // A failed run closes its Grid session too.
    assert_no_sessions(&grid);
    assert!(records(&ws).is_empty());
}

/// Capabilities from clerk.yaml are merged into the session request: a
/// browser the Grid does not have is refused (the request reached the
/// Grid), and a Chromium flag is added to clerk's own.
#[test]
fn capabilities_from_clerk_yaml_reach_the_grid() {
    let grid = Grid::start();
    let portal = Portal::start(&[]);
    let ws = Workspace::new(Backend::Sqlite);
    use_grid(
        &ws,
        &grid,
        "  capabilities:\n    goog:chromeOptions:\n      args: [\"--user-agent=clerk-grid-test/1.0\"]\n",
    );
    ws.write(
        "lang.yaml",
        "name: lang\ninputs:\n  portal: { type: string }\nsteps:\n  - browser.open: \"{{ inputs.portal }}/login\"\n  - browser.execute_script: { script: \"return navigator.userAgent\" }\n    save_as: agent\n",
    );
    let r = run_playbook(&ws, "lang.yaml", &portal);
    let v = r.json();
    assert_eq!(v["status"], "succeeded", "{}\n{}", r.stdout(), r.stderr());
    assert_eq!(v["vars"]["agent"], "clerk-grid-test/1.0");

    // A platform no node has: the Grid refuses, clerk says so (the Grid's
    // new-session queue would wait; clerk's start limit ends the wait).
    let ws2 = Workspace::new(Backend::Sqlite);
    use_grid(&ws2, &grid, "  capabilities:\n    browserName: firefox\n");
    ws2.write("lang.yaml", &ws.read("lang.yaml"));
    let r = run_playbook(&ws2, "lang.yaml", &portal);
    assert_ne!(r.code(), 0);
    let out = r.stdout() + &r.stderr();
    assert!(
        out.contains("cannot open a browser session at") || out.contains("did not start"),
        "{out}"
    );
    assert_no_sessions(&grid);
}

/// The session of a clerk killed with SIGKILL is closed by the next clerk
/// start (within 30 s), although the Grid itself would keep it for its
/// 300 s idle timeout; a live clerk's session is left alone.
#[test]
fn a_killed_clerks_grid_session_is_closed_by_the_next_start() {
    let grid = Grid::start_with(grid::Options {
        session_timeout: 300,
        ..Default::default()
    });
    let portal = Portal::start(&[]);
    let ws = Workspace::new(Backend::Sqlite);
    use_grid(&ws, &grid, "");
    ws.write(
        "long.yaml",
        &format!(
            "name: long\ninputs:\n  portal: {{ type: string }}\nsteps:\n{LOGIN}  - wait: 10m\n"
        ),
    );
    let log = std::fs::File::create(ws.path().join("run.log")).expect("run.log");
    let mut child = ws
        .cmd()
        .args(["run", "long.yaml", "--input"])
        .arg(format!("portal={}", portal.url))
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start clerk run");
    // A slot shows `sessionId: reserved` while the session is being created.
    grid.wait_until("the run's Grid session", Duration::from_secs(120), |g| {
        let s = g.sessions();
        s.len() == 1 && s[0]["sessionId"] != "reserved"
    });
    let session = grid.sessions()[0]["sessionId"]
        .as_str()
        .expect("session id")
        .to_string();
    // Recorded with its run and owner process.
    let wait_record = Instant::now();
    while records(&ws).is_empty() {
        assert!(
            wait_record.elapsed() < Duration::from_secs(30),
            "no record of the session; the run says:\n{}",
            ws.read("run.log")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rec: Value = serde_json::from_str(
        &std::fs::read_to_string(
            ws.path()
                .join(".clerk/grid-sessions")
                .join(format!("{session}.json")),
        )
        .unwrap_or_else(|e| {
            panic!(
                "the record of session {session}: {e}; records: {:?}; Grid: {:?}",
                records(&ws),
                grid.sessions()
            )
        }),
    )
    .expect("record JSON");
    assert_eq!(rec["pid"], child.id());
    assert_eq!(rec["session"], session);
    assert!(rec["run"].as_str().is_some_and(|r| !r.is_empty()));

    // Another clerk start while the owner lives leaves the session alone.
    ws.clerk(&["runs", "list"]).ok();
    assert_eq!(grid.sessions().len(), 1, "a live run's session was closed");

    // kill -9: nothing in clerk can close the session now.
    // SAFETY: sends SIGKILL to the clerk child this test started.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGKILL);
    }
    let _ = child.wait();
    assert_eq!(
        grid.sessions().len(),
        1,
        "the Grid still holds the killed clerk's session"
    );

    // The next clerk start closes it.
    let next = Instant::now();
    ws.clerk(&["runs", "list"]).ok();
    let gone = grid.wait_until(
        "the killed clerk's session to be gone",
        Duration::from_secs(30),
        |g| g.sessions().is_empty(),
    );
    eprintln!(
        "session gone {:.2} s after the next clerk start ({:.2} s of polling)",
        next.elapsed().as_secs_f64(),
        gone.as_secs_f64()
    );
    assert!(records(&ws).is_empty(), "{:?}", records(&ws));
    // The run itself is marked interrupted by the same start.
    let runs = ws.clerk(&["runs", "list", "--json"]).ok().json();
    let first = runs
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(first["status"], "interrupted", "{runs}");
}
