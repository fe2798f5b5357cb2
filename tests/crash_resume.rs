//! The crash test of durable work items: the flagship job
//! (`playbooks/parking-permits.yaml`) against the real legacy portal started
//! with `--accept-duplicates` (so nothing but clerk itself stands between a
//! crash and a duplicate case), real headless Chromium and a real SMTP server.
//!
//! One lineage per backend: `clerk run`, then `kill -9` at a random moment,
//! `clerk runs resume` of the run that was killed, kill again, … 20 times,
//! then resumes until the run finishes. The kill moments are drawn from the
//! time the run has been running (seeded; the seed is printed and
//! `CLERK_CRASH_SEED=N` replays it). Afterwards the portal must hold each of
//! the 36 valid requests exactly once, the results workbook the 36 with the
//! portal's references, the exceptions workbook the 4 rejections, the SMTP
//! server exactly one mail, and `clerk audit verify` must pass.
//!
//! Then the same job WITHOUT its `verify:` block, killed while an item is in
//! progress: nothing is entered twice, and each item whose outcome could not
//! be known is listed by `clerk items --state in_doubt --json`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use calamine::{Data, Reader as _};
use common::portal::Portal;
use common::smtp::SmtpServer;
use common::{Backend, Workspace};
use serde_json::Value;

const PORTAL_USER: &str = "permits-bot";
const PORTAL_PASSWORD: &str = "Pw-crash-2b7d41";
const KILLS: usize = 20;
const REJECTED: [&str; 4] = [
    "PR-2026-0007",
    "PR-2026-0015",
    "PR-2026-0023",
    "PR-2026-0031",
];
/// Upper bound for one `clerk` process in this test (a full flagship run
/// takes well under a minute).
const PROCESS_DEADLINE: Duration = Duration::from_secs(240);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// splitmix64: a tiny seeded generator, so that a seed replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` milliseconds.
    fn millis(&mut self, n: u64) -> Duration {
        Duration::from_millis(self.next() % n.max(1))
    }
}

fn seed(label: &str) -> u64 {
    let seed = match std::env::var("CLERK_CRASH_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("CLERK_CRASH_SEED must be a whole number, got {s:?}")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    };
    eprintln!("crash test {label}: seed {seed} (replay with CLERK_CRASH_SEED={seed})");
    seed
}

/// The flagship playbook as shipped, or without its `verify:` block.
fn playbook_text(with_verify: bool) -> String {
    let text = std::fs::read_to_string(repo().join("playbooks/parking-permits.yaml"))
        .expect("read the flagship playbook");
    if with_verify {
        assert!(
            text.contains("\n    verify:"),
            "the flagship loop must declare verify:"
        );
        return text;
    }
    // Drop the loop's `verify:` key and everything indented under it.
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if line.starts_with("    verify:") {
            skipping = true;
            continue;
        }
        if skipping && (line.trim().is_empty() || indent > 4) {
            continue;
        }
        skipping = false;
        out.push_str(line);
        out.push('\n');
    }
    assert!(!out.contains("verify:"), "verify block not removed");
    out
}

fn workspace(backend: Backend, smtp: &SmtpServer, playbook: &str) -> Workspace {
    let ws = Workspace::new(backend);
    ws.write("playbooks/parking-permits.yaml", playbook);
    std::fs::create_dir_all(ws.path().join("fixtures/sheets")).expect("mkdir");
    std::fs::copy(
        repo().join("fixtures/sheets/permit-requests.xlsx"),
        ws.path().join("fixtures/sheets/permit-requests.xlsx"),
    )
    .expect("copy export");
    ws.write(
        "clerk.yaml",
        &format!(
            "mail:\n  transport: smtp\n  from: clerk@city.example\n  smtp:\n    host: 127.0.0.1\n    port: {}\n    tls: none\n",
            smtp.port
        ),
    );
    ws
}

/// A `clerk` process in its own process group (so that its chromedriver and
/// Chromium can be killed with it, as a power cut would).
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(ws: &Workspace, args: &[&str], n: usize) -> Proc {
        use std::os::unix::process::CommandExt as _;
        let log = ws.path().join(format!("logs/{n}.log"));
        std::fs::create_dir_all(log.parent().expect("log dir")).expect("mkdir logs");
        let file = std::fs::File::create(&log).expect("create log");
        let mut c = ws.cmd();
        c.args(args)
            .env("CLERK_SECRET_PORTAL_USER", PORTAL_USER)
            .env("CLERK_SECRET_PORTAL_PASSWORD", PORTAL_PASSWORD)
            .stdout(file.try_clone().expect("dup log"))
            .stderr(file)
            .stdin(Stdio::null())
            .process_group(0);
        Proc {
            child: c.spawn().expect("start clerk"),
            log,
        }
    }

    /// `kill -9` of clerk, then of whatever it started (its process group).
    fn kill9(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: plain signal sends to our own child and its group.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }

    /// Exit code once it ended on its own, `None` while it runs.
    fn exited(&mut self) -> Option<i32> {
        match self.child.try_wait().expect("poll clerk") {
            Some(s) => {
                // Its browser may outlive it for a moment; clean the group up.
                unsafe {
                    libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
                }
                Some(s.code().unwrap_or(-1))
            }
            None => None,
        }
    }

    fn wait(&mut self) -> i32 {
        let deadline = Instant::now() + PROCESS_DEADLINE;
        loop {
            if let Some(code) = self.exited() {
                return code;
            }
            if Instant::now() > deadline {
                self.kill9();
                panic!("clerk did not finish in time; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.kill9();
        }
    }
}

/// A query that may run before clerk created the store: no rows then.
fn try_query(ws: &Workspace, q: &str) -> Vec<String> {
    let out = match &ws.db_url {
        Some(url) => std::process::Command::new("psql")
            .arg(url)
            .args(["-qAt", "-v", "ON_ERROR_STOP=1", "-c", q])
            .output(),
        None => {
            let db = ws.path().join(".clerk/clerk.db");
            if !db.exists() {
                return Vec::new();
            }
            std::process::Command::new("sqlite3")
                .arg(db)
                .arg(q)
                .output()
        }
    }
    .expect("sqlite3 / psql must be installed");
    if !out.status.success() {
        return Vec::new();
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Every run of the workspace, oldest first: (id, status, lineage).
fn runs(ws: &Workspace) -> Vec<(String, String, String)> {
    try_query(
        ws,
        "SELECT id, status, COALESCE(lineage, '') FROM runs ORDER BY queued_at, id",
    )
    .into_iter()
    .map(|l| {
        let mut f = l.split('|').map(str::to_string);
        (
            f.next().unwrap_or_default(),
            f.next().unwrap_or_default(),
            f.next().unwrap_or_default(),
        )
    })
    .collect()
}

/// Waits until a run newer than `known` runs runs and returns its id; `None`
/// when the process ended first.
fn wait_for_new_run(ws: &Workspace, proc: &mut Proc, known: usize) -> Option<String> {
    let deadline = Instant::now() + PROCESS_DEADLINE;
    loop {
        let all = runs(ws);
        if all.len() > known
            && let Some((id, status, _)) = all.last()
            && status == "running"
        {
            return Some(id.clone());
        }
        if proc.exited().is_some() {
            return None;
        }
        assert!(
            Instant::now() < deadline,
            "no run started; log:\n{}",
            proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn count_in(ws: &Workspace, q: &str) -> usize {
    try_query(ws, q)
        .first()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

/// Kill moments are drawn from the time a run has been running; later kills
/// get a longer window so that they also land in the loop's later items and
/// in the steps after it (workbooks, mail).
fn kill_window_ms(kill: usize) -> u64 {
    800 + 120 * kill as u64
}

/// One lineage: start the job, then (kill, resume) KILLS times, then resume
/// until it finishes. Returns the lineage's last run id and how many kills
/// landed while a run was running.
fn crash_and_resume(ws: &Workspace, portal: &Portal, rng: &mut Rng) -> (String, usize) {
    let portal_input = format!("portal_url={}", portal.url);
    let mut args: Vec<String> = [
        "run",
        "playbooks/parking-permits.yaml",
        "--input",
        &portal_input,
        "--json",
    ]
    .map(String::from)
    .to_vec();
    let mut kills = 0;
    let mut last_run: Option<String> = None;
    for n in 0..KILLS * 3 + 10 {
        let known = runs(ws).len();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut proc = Proc::spawn(ws, &argv, n);
        let started = wait_for_new_run(ws, &mut proc, known);
        if let Some(id) = &started {
            last_run = Some(id.clone());
        }
        let mut killed = false;
        if kills < KILLS && started.is_some() {
            let moment = rng.millis(kill_window_ms(kills));
            let until = Instant::now() + moment;
            while Instant::now() < until && proc.exited().is_none() {
                std::thread::sleep(Duration::from_millis(5));
            }
            if proc.exited().is_none() {
                proc.kill9();
                kills += 1;
                killed = true;
                eprintln!(
                    "kill {kills}: {} ms into run {}",
                    moment.as_millis(),
                    last_run.as_deref().unwrap_or("?")
                );
            }
        }
        if !killed {
            let code = proc.wait();
            eprintln!("process {n} ({}) exited {code}", args[0]);
        }
        let run_id = last_run
            .clone()
            .unwrap_or_else(|| panic!("no run started; log:\n{}", proc.log_text()));
        let status = runs(ws)
            .into_iter()
            .find(|(id, _, _)| *id == run_id)
            .map(|(_, s, _)| s)
            .unwrap_or_default();
        if status.starts_with("succeeded") {
            return (run_id, kills);
        }
        // Continue the lineage from the run that was killed (or failed).
        args = ["runs", "resume", &run_id, "--mark-interrupted", "--json"]
            .map(String::from)
            .to_vec();
    }
    panic!(
        "the lineage did not finish after {} processes",
        KILLS * 3 + 10
    );
}

fn cell_text(c: &Data) -> String {
    match c {
        Data::Float(f) if f.fract() == 0.0 => format!("{}", *f as i64),
        other => other.to_string(),
    }
}

fn output_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut wb = calamine::open_workbook_auto(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let range = wb
        .worksheet_range_at(0)
        .expect("a first sheet")
        .expect("readable sheet");
    let mut rows = range.rows();
    let header: Vec<String> = rows
        .next()
        .expect("header row")
        .iter()
        .map(|c| c.to_string())
        .collect();
    rows.map(|r| {
        header
            .iter()
            .zip(r)
            .map(|(h, c)| (h.clone(), cell_text(c)))
            .collect()
    })
    .collect()
}

/// The one workbook in `out/` whose name starts with `prefix`.
fn workbook(ws: &Workspace, prefix: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(ws.path().join("out"))
        .expect("out/ exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".xlsx"))
        })
        .collect();
    assert_eq!(found.len(), 1, "{prefix}*.xlsx: {found:?}");
    found[0].clone()
}

/// The cases by request id; panics on a duplicate.
fn cases_by_request(portal: &Portal) -> BTreeMap<String, Value> {
    let mut by = BTreeMap::new();
    for c in portal.cases() {
        let id = c["request_id"].as_str().expect("request_id").to_string();
        let reference = c["reference"].clone();
        if let Some(first) = by.insert(id.clone(), c) {
            panic!("{id} entered twice: {} and {reference}", first["reference"]);
        }
    }
    by
}

fn crash_test(backend: Backend) {
    let label = format!("{backend:?}");
    let mut rng = Rng(seed(&label));
    // Every answer 40 ms late, so a run lasts long enough for the kill
    // windows (`kill_window_ms`) with any browser: with the headless shell
    // a resumed run could end before its kill.
    let portal = Portal::start(&[
        "--user",
        PORTAL_USER,
        "--password",
        PORTAL_PASSWORD,
        "--accept-duplicates",
        "--slow",
        "40",
    ]);
    let smtp = SmtpServer::start(&[]);
    let ws = workspace(backend, &smtp, &playbook_text(true));

    let (last, kills) = crash_and_resume(&ws, &portal, &mut rng);
    assert_eq!(kills, KILLS, "every kill landed on a running run");

    // One lineage, every run in it.
    let all = runs(&ws);
    let lineages: BTreeSet<&str> = all.iter().map(|(_, _, l)| l.as_str()).collect();
    assert_eq!(lineages.len(), 1, "one lineage: {all:?}");
    assert!(all.len() > KILLS, "{all:?}");

    // The portal holds each of the 36 valid requests exactly once.
    let cases = cases_by_request(&portal);
    assert_eq!(portal.cases().len(), 36, "portal cases");
    for id in REJECTED {
        assert!(!cases.contains_key(id), "{id} must have been rejected");
    }

    // The results workbook lists the 36 with the portal's references.
    let results = output_rows(&workbook(&ws, "permits-"));
    assert_eq!(results.len(), 36, "results: {results:#?}");
    let listed: BTreeSet<&str> = results.iter().map(|r| r["request_id"].as_str()).collect();
    assert_eq!(listed.len(), 36, "each request listed once: {results:#?}");
    for r in &results {
        let case = cases
            .get(&r["request_id"])
            .unwrap_or_else(|| panic!("{} listed but not in the portal", r["request_id"]));
        assert_eq!(
            case["reference"].as_str(),
            Some(r["reference"].as_str()),
            "{}: the portal's reference",
            r["request_id"]
        );
    }

    // The exceptions workbook has the 4 rejections.
    let exceptions = output_rows(&workbook(&ws, "permit-exceptions-"));
    let rejected: BTreeSet<&str> = exceptions
        .iter()
        .map(|e| e["request_id"].as_str())
        .collect();
    assert_eq!(
        rejected,
        REJECTED.into_iter().collect(),
        "exceptions: {exceptions:#?}"
    );
    assert_eq!(exceptions.len(), 4, "exceptions: {exceptions:#?}");

    // Exactly one mail for the lineage.
    assert_eq!(smtp.messages().len(), 1, "one mail per lineage");

    // The ledger agrees: 36 done and 4 business exceptions in the lineage.
    let done = count_in(
        &ws,
        &format!(
            "SELECT COUNT(*) FROM work_items WHERE state = 'done' AND lineage = \
             (SELECT lineage FROM runs WHERE id = '{last}') AND item_key <> ''"
        ),
    );
    assert_eq!(done, 36, "done items in the ledger");

    let verify = ws.clerk(&["audit", "verify"]);
    assert_eq!(verify.code(), 0, "{}{}", verify.stdout(), verify.stderr());
    assert!(verify.stdout().starts_with("ok"), "{}", verify.stdout());
    // What the kills hit (for the log; which ones is up to the seed).
    let kinds = try_query(
        &ws,
        "SELECT kind, COUNT(*) FROM audit_events WHERE kind IN \
         ('item.verified', 'item.skipped', 'step.skipped', 'run.interrupted') GROUP BY kind",
    );
    eprintln!("{label}: {} runs; {kinds:?}", all.len());
}

/// Without `verify:`, an item killed while in progress is never re-entered:
/// it ends `in_doubt`, and `clerk items` lists it for a person.
fn in_doubt_test(backend: Backend) {
    let label = format!("{backend:?} without verify");
    let mut rng = Rng(seed(&label));
    let portal = Portal::start(&[
        "--user",
        PORTAL_USER,
        "--password",
        PORTAL_PASSWORD,
        "--accept-duplicates",
    ]);
    let smtp = SmtpServer::start(&[]);
    let ws = workspace(backend, &smtp, &playbook_text(false));
    let portal_input = format!("portal_url={}", portal.url);
    let mut proc = Proc::spawn(
        &ws,
        &[
            "run",
            "playbooks/parking-permits.yaml",
            "--input",
            &portal_input,
            "--json",
        ],
        0,
    );
    let run_id = wait_for_new_run(&ws, &mut proc, 0).expect("the run started");
    // Kill while an item is in progress, after a random number of items.
    let after_items = 1 + (rng.next() % 12) as usize;
    let deadline = Instant::now() + PROCESS_DEADLINE;
    loop {
        let done = count_in(
            &ws,
            "SELECT COUNT(*) FROM work_items WHERE state IN ('done', 'business_exception')",
        );
        let busy = count_in(
            &ws,
            "SELECT COUNT(*) FROM work_items WHERE state = 'in_progress'",
        );
        if done >= after_items && busy == 1 {
            break;
        }
        assert!(
            proc.exited().is_none(),
            "the run ended before the kill; log:\n{}",
            proc.log_text()
        );
        assert!(Instant::now() < deadline, "no item in progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    proc.kill9();
    let before = portal.cases().len();

    let mut resume = Proc::spawn(
        &ws,
        &["runs", "resume", &run_id, "--mark-interrupted", "--json"],
        1,
    );
    let code = resume.wait();
    let log = resume.log_text();
    assert_eq!(code, 0, "resume; log:\n{log}");

    // Nothing entered twice.
    let cases = cases_by_request(&portal);
    assert!(cases.len() >= before);

    let items = ws
        .clerk(&["items", "--state", "in_doubt", "--json"])
        .ok()
        .json();
    let listed: Vec<&str> = items
        .as_array()
        .expect("an array of items")
        .iter()
        .map(|i| i["key"].as_str().or(i["item_key"].as_str()).expect("key"))
        .collect();
    assert_eq!(listed.len(), 1, "one item was in progress: {items:#}");
    for i in items.as_array().into_iter().flatten() {
        assert_eq!(i["state"], "in_doubt", "{i}");
    }
    // Every request is either in the portal once or the one in doubt (which
    // may or may not be there: a person checks it), except the rejections.
    let in_portal: BTreeSet<&str> = cases.keys().map(String::as_str).collect();
    for id in (1..=40).map(|n| format!("PR-2026-{n:04}")) {
        if REJECTED.contains(&id.as_str()) || listed.contains(&id.as_str()) {
            continue;
        }
        assert!(in_portal.contains(id.as_str()), "{id} was not entered");
    }
    assert_eq!(smtp.messages().len(), 1, "one mail per lineage");
    let verify = ws.clerk(&["audit", "verify"]);
    assert_eq!(verify.code(), 0, "{}", verify.stdout());
}

#[test]
fn flagship_survives_twenty_kills_on_sqlite() {
    crash_test(Backend::Sqlite);
}

#[test]
fn flagship_survives_twenty_kills_on_postgres() {
    crash_test(Backend::Postgres);
}

#[test]
fn without_verify_an_interrupted_item_is_in_doubt_not_redone_on_sqlite() {
    in_doubt_test(Backend::Sqlite);
}

#[test]
fn without_verify_an_interrupted_item_is_in_doubt_not_redone_on_postgres() {
    in_doubt_test(Backend::Postgres);
}
