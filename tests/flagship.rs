//! The flagship virtual worker end to end: `playbooks/parking-permits.yaml`
//! reads the 40-request export, enters it into the real legacy portal through
//! real headless Chromium, writes the results and exceptions workbooks and
//! mails both to a real SMTP server on loopback. Then everything it left behind
//! is checked against the source: the portal's cases field by field, both
//! sheets, the mail and its attachments, the audit chain, and the absence of
//! the portal password anywhere.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use calamine::{Data, Reader as _};
use common::portal::Portal;
use common::smtp::{SmtpServer, leaves, one_header};
use common::{Backend, Workspace, dump_store};
use serde_json::Value;

const PORTAL_USER: &str = "permits-bot";
/// Distinctive, so that a leak anywhere is found by a plain text search.
const PORTAL_PASSWORD: &str = "Pw-7f3e9c1a-Flagship";
const REJECTION_MESSAGES: [(&str, &str); 4] = [
    (
        "PR-2026-0007",
        "Vehicle plate must be 4 to 10 capitals, digits or dashes",
    ),
    ("PR-2026-0015", "Postcode must be 4 digits"),
    (
        "PR-2026-0023",
        "Start date must be a real date between 2020-01-01 and 2099-12-31",
    ),
    ("PR-2026-0031", "Email must be a valid address"),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The 40 source rows, read straight from the workbook with calamine.
fn source_rows() -> Vec<BTreeMap<String, String>> {
    let path = repo().join("fixtures/sheets/permit-requests.xlsx");
    let mut wb = calamine::open_workbook_auto(&path).expect("open permit-requests.xlsx");
    let range = wb.worksheet_range("Requests").expect("sheet Requests");
    let mut rows = range.rows();
    let header: Vec<String> = rows
        .next()
        .expect("header row")
        .iter()
        .map(|c| c.to_string())
        .collect();
    rows.filter(|r| r.iter().any(|c| !matches!(c, Data::Empty)))
        .map(|r| {
            header
                .iter()
                .zip(r)
                .map(|(h, c)| (h.clone(), cell_text(c)))
                .collect()
        })
        .collect()
}

fn cell_text(c: &Data) -> String {
    match c {
        Data::DateTime(d) => d
            .as_datetime()
            .map(|t| t.date().format("%Y-%m-%d").to_string())
            .unwrap_or_default(),
        Data::Float(f) if f.fract() == 0.0 => format!("{}", *f as i64),
        other => other.to_string(),
    }
}

/// Reads an output workbook's first sheet as header-keyed rows of text.
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

fn sha256_file(path: &Path) -> String {
    use sha2::Digest as _;
    let bytes = std::fs::read(path).expect("read file");
    hex::encode(sha2::Sha256::digest(bytes))
}

fn workspace(smtp: &SmtpServer) -> Workspace {
    let ws = Workspace::new(Backend::Sqlite);
    std::fs::create_dir_all(ws.path().join("playbooks")).expect("mkdir");
    std::fs::create_dir_all(ws.path().join("fixtures/sheets")).expect("mkdir");
    std::fs::copy(
        repo().join("playbooks/parking-permits.yaml"),
        ws.path().join("playbooks/parking-permits.yaml"),
    )
    .expect("copy playbook");
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

struct Outcome {
    run: Value,
    stdout: String,
    stderr: String,
}

fn run_flagship(ws: &Workspace, portal: &Portal) -> Outcome {
    let r = ws.clerk_env(
        &[
            "run",
            "playbooks/parking-permits.yaml",
            "--input",
            &format!("portal_url={}", portal.url),
            "--json",
        ],
        &[
            ("CLERK_SECRET_PORTAL_USER", PORTAL_USER),
            ("CLERK_SECRET_PORTAL_PASSWORD", PORTAL_PASSWORD),
        ],
    );
    let stdout = r.stdout();
    let stderr = r.stderr();
    assert_eq!(
        r.code(),
        0,
        "the flagship run failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    Outcome {
        run: r.json(),
        stdout,
        stderr,
    }
}

/// Everything the job must leave behind after entering the whole export once.
fn check_first_run(
    ws: &Workspace,
    portal: &Portal,
    smtp: &SmtpServer,
    out: &Outcome,
    retries_expected: bool,
) {
    let summary = &out.run["vars"]["summary"];
    assert_eq!(summary["entered"], 36, "summary: {summary}");
    assert_eq!(summary["already"], 0, "summary: {summary}");
    assert_eq!(summary["rejected"], 4, "summary: {summary}");
    assert_eq!(summary["failed"], 0, "summary: {summary}");

    // The portal holds exactly the 36 valid requests, field by field.
    let source = source_rows();
    assert_eq!(source.len(), 40);
    let rejected: BTreeSet<&str> = REJECTION_MESSAGES.iter().map(|(id, _)| *id).collect();
    let cases = portal.cases();
    assert_eq!(cases.len(), 36, "portal cases: {cases:#?}");
    let mut by_request: BTreeMap<String, &Value> = BTreeMap::new();
    for c in &cases {
        let id = c["request_id"].as_str().expect("request_id").to_string();
        assert!(
            by_request.insert(id.clone(), c).is_none(),
            "{id} entered twice"
        );
    }
    for row in &source {
        let id = &row["request_id"];
        if rejected.contains(id.as_str()) {
            assert!(
                !by_request.contains_key(id),
                "{id} should have been rejected"
            );
            continue;
        }
        let case = by_request
            .get(id)
            .unwrap_or_else(|| panic!("{id} missing from the portal"));
        for field in [
            "applicant_name",
            "street_address",
            "postcode",
            "vehicle_plate",
            "permit_type",
            "start_date",
            "email",
        ] {
            assert_eq!(
                case[field].as_str(),
                Some(row[field].as_str()),
                "{id}: field {field}"
            );
        }
        assert_eq!(case["details_confirmed"], true, "{id}: details confirmed");
    }

    // The results sheet lists the 36 references the portal gave.
    let entered_file = ws
        .path()
        .join(summary["entered_file"].as_str().expect("entered_file"));
    let exceptions_file = ws.path().join(
        summary["exceptions_file"]
            .as_str()
            .expect("exceptions_file"),
    );
    let stamps = [
        chrono::Local::now().format("%Y-%m-%d").to_string(),
        chrono::Utc::now().format("%Y-%m-%d").to_string(),
    ];
    assert!(
        stamps
            .iter()
            .any(|d| entered_file.ends_with(format!("out/permits-{d}.xlsx"))
                && exceptions_file.ends_with(format!("out/permit-exceptions-{d}.xlsx"))),
        "{} / {}",
        entered_file.display(),
        exceptions_file.display()
    );
    let results = output_rows(&entered_file);
    assert_eq!(results.len(), 36, "results: {results:#?}");
    for r in &results {
        let case = by_request.get(&r["request_id"]).unwrap_or_else(|| {
            panic!(
                "results list {} which is not in the portal",
                r["request_id"]
            )
        });
        assert_eq!(
            case["reference"].as_str(),
            Some(r["reference"].as_str()),
            "{}: reference",
            r["request_id"]
        );
        assert!(r["reference"].starts_with("CASE-"));
        assert_eq!(r["status"], "entered");
    }

    // The exceptions sheet lists the 4 rejected with the portal's messages.
    let exceptions = output_rows(&exceptions_file);
    assert_eq!(exceptions.len(), 4, "exceptions: {exceptions:#?}");
    for (id, message) in REJECTION_MESSAGES {
        let e = exceptions
            .iter()
            .find(|e| e["request_id"] == id)
            .unwrap_or_else(|| panic!("{id} missing from the exceptions sheet"));
        assert!(
            e["reason"].contains(message),
            "{id}: reason {:?} should quote the portal's {message:?}",
            e["reason"]
        );
    }

    // The mail arrived with both workbooks, byte for byte.
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "one mail, not {}", mails.len());
    let mail = &mails[0].parsed;
    assert_eq!(one_header(mail, "to"), "permits-team@city.example");
    let subject = one_header(mail, "subject");
    assert!(
        subject.contains("36 entered") && subject.contains("4 rejected"),
        "subject: {subject}"
    );
    let attachments: Vec<&Value> = leaves(&mail["body"])
        .into_iter()
        .filter(|p| p["disposition"] == "attachment")
        .collect();
    assert_eq!(attachments.len(), 3, "{attachments:#?}");
    // The run report (report.write) is the third attachment.
    let report = attachments
        .iter()
        .find(|a| {
            a["filename"]
                .as_str()
                .is_some_and(|n| n.starts_with("run-report-") && n.ends_with(".html"))
        })
        .unwrap_or_else(|| panic!("the run report is not attached: {attachments:#?}"));
    let report_file = entered_file.with_file_name(report["filename"].as_str().expect("name"));
    assert_eq!(
        report["sha256"].as_str(),
        Some(sha256_file(&report_file).as_str())
    );
    let report_html = std::fs::read_to_string(&report_file).expect("report file");
    assert!(
        report_html.contains("id=\"item-PR-2026-0012\""),
        "the report lists the requests"
    );
    for file in [&entered_file, &exceptions_file] {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .expect("file name");
        let a = attachments
            .iter()
            .find(|a| a["filename"] == name)
            .unwrap_or_else(|| panic!("{name} not attached: {attachments:#?}"));
        assert_eq!(a["sha256"].as_str(), Some(sha256_file(file).as_str()));
        assert_eq!(
            a["content_type"],
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        );
    }
    assert_eq!(
        summary["message_id"]
            .as_str()
            .map(|s| s.trim_matches(['<', '>'])),
        Some(one_header(mail, "message-id").trim_matches(['<', '>'])),
    );

    // The audit chain verifies and holds one action event per field filled.
    let verify = ws.clerk(&["audit", "verify"]);
    assert_eq!(verify.code(), 0, "{}", verify.stdout());
    assert!(verify.stdout().starts_with("ok:"), "{}", verify.stdout());
    let run_id = out.run["id"].as_str().expect("run id");
    let events = audit_events(ws, run_id);
    // What the bot READ is evidence too (issue 12): the portal's reference of
    // each entered request, and each rejection's text, are in the `value` of
    // a read event (wait_for any / dialog) of that item.
    let read_of = |key: &str, needle: &str| {
        events.iter().any(|e| {
            e["kind"] == "action"
                && e["item_key"] == key
                && matches!(
                    e["action"].as_str(),
                    Some(
                        "browser.wait_for"
                            | "browser.dialog"
                            | "browser.read_text"
                            | "browser.click"
                    )
                )
                && e["detail"]["value"].to_string().contains(needle)
        })
    };
    for r in &results {
        assert!(
            read_of(r["request_id"].as_str(), r["reference"].as_str()),
            "{}: no read event holds the reference {}",
            r["request_id"],
            r["reference"]
        );
    }
    for (id, message) in REJECTION_MESSAGES {
        assert!(
            read_of(id, message),
            "{id}: no read event holds the portal's {message:?}"
        );
    }
    for (i, row) in source.iter().enumerate() {
        let id = &row["request_id"];
        let item = format!("/item[{}]/", i + 1);
        // One `browser.fill_form` event per attempt lists every field it
        // filled with its value (or single fill/select/check events, one per field).
        let mut filled: Vec<Value> = Vec::new();
        for e in events.iter().filter(|e| {
            e["kind"] == "action"
                && e["outcome"] == "ok"
                && e["step"].as_str().is_some_and(|s| s.contains(&item))
        }) {
            match e["action"].as_str() {
                Some("browser.fill_form") => {
                    for f in e["detail"]["fields"].as_array().into_iter().flatten() {
                        assert_eq!(f["outcome"], "ok", "{id}: {e}");
                        filled.push(serde_json::json!({
                            "target": f["label"],
                            "detail": { "value": f["value"] },
                        }));
                    }
                }
                Some("browser.fill" | "browser.select" | "browser.check") => {
                    filled.push(e.clone());
                }
                _ => {}
            }
        }
        // Per attempt: request id, name, street, postcode, plate, date, email,
        // notes filled; permit type selected; "Details confirmed" checked.
        let attempts = filled
            .iter()
            .filter(|e| {
                e["target"]
                    .as_str()
                    .is_some_and(|t| t.contains("Request id"))
            })
            .count();
        assert!(attempts >= 1, "{id}: no fill of Request id");
        if !retries_expected {
            assert_eq!(attempts, 1, "{id}: entered once");
        }
        assert_eq!(filled.len(), 10 * attempts, "{id}: {filled:#?}");
        let plate = filled
            .iter()
            .find(|e| {
                e["target"]
                    .as_str()
                    .is_some_and(|t| t.contains("Vehicle plate"))
            })
            .unwrap_or_else(|| panic!("{id}: no fill of Vehicle plate"));
        assert!(
            plate["detail"].to_string().contains(&row["vehicle_plate"]),
            "{id}: the plate typed is audited: {plate}"
        );
    }
    let password_fill = events
        .iter()
        .find(|e| {
            matches!(
                e["action"].as_str(),
                Some("browser.fill" | "browser.fill_form")
            ) && e["target"].to_string().contains("Password")
        })
        .expect("the sign-in password fill is audited");
    assert!(password_fill["detail"].to_string().contains("***"));
    if password_fill["action"] == "browser.fill_form" {
        let fields = password_fill["detail"]["fields"]
            .as_array()
            .expect("fields");
        let pw = fields
            .iter()
            .find(|f| f["label"] == "Password")
            .expect("the Password field is listed");
        assert_eq!(pw["value"], "***", "{password_fill}");
    }

    // No secret anywhere: database, CLI output, artifacts' names and contents.
    let store = dump_store(ws);
    assert!(
        !store.contains(PORTAL_PASSWORD),
        "the password is in the store"
    );
    assert!(!out.stdout.contains(PORTAL_PASSWORD));
    assert!(!out.stderr.contains(PORTAL_PASSWORD));
    for entry in walk(&ws.path().join(".clerk")) {
        assert!(!entry.to_string_lossy().contains(PORTAL_PASSWORD));
        if entry.is_file() && entry.extension().is_none_or(|x| x != "db") {
            let bytes = std::fs::read(&entry).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(PORTAL_PASSWORD),
                "the password is in {}",
                entry.display()
            );
        }
    }

    // The run report names each item with its reference or its exception.
    let show = ws.clerk(&["runs", "show", run_id]);
    assert_eq!(show.code(), 0);
    let report = show.stdout();
    let first = &results[0];
    assert!(report.contains(&first["reference"]), "{report}");
    assert!(report.contains("PR-2026-0015"), "{report}");
    assert!(report.contains("Postcode must be 4 digits"), "{report}");
}

fn audit_events(ws: &Workspace, run_id: &str) -> Vec<Value> {
    let export = ws.clerk(&["audit", "export", "--run", run_id, "--format", "jsonl"]);
    assert_eq!(export.code(), 0, "{}", export.stderr());
    export
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).expect("an audit event per line"))
        .collect()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn parking_permits_enters_the_export_and_a_second_run_enters_nothing_new() {
    let portal = Portal::start(&["--user", PORTAL_USER, "--password", PORTAL_PASSWORD]);
    let smtp = SmtpServer::start(&[]);
    let ws = workspace(&smtp);

    let first = run_flagship(&ws, &portal);
    check_first_run(&ws, &portal, &smtp, &first, false);

    // The second night over the same export: everything is already on file.
    let second = run_flagship(&ws, &portal);
    let summary = &second.run["vars"]["summary"];
    assert_eq!(summary["entered"], 0, "summary: {summary}");
    assert_eq!(summary["already"], 36, "summary: {summary}");
    assert_eq!(summary["rejected"], 4, "summary: {summary}");
    assert_eq!(summary["failed"], 0, "summary: {summary}");
    assert_eq!(portal.cases().len(), 36, "nothing entered twice");
    let results = output_rows(
        &ws.path()
            .join(summary["entered_file"].as_str().expect("entered_file")),
    );
    assert_eq!(results.len(), 36);
    assert!(
        results
            .iter()
            .all(|r| r["status"] == "already_entered" && r["reference"].starts_with("CASE-"))
    );
    assert_eq!(smtp.messages().len(), 2);
}

#[test]
fn parking_permits_survives_a_portal_failing_every_seventh_submission() {
    let portal = Portal::start(&[
        "--user",
        PORTAL_USER,
        "--password",
        PORTAL_PASSWORD,
        "--fail-every",
        "7",
    ]);
    let smtp = SmtpServer::start(&[]);
    let ws = workspace(&smtp);
    let out = run_flagship(&ws, &portal);
    check_first_run(&ws, &portal, &smtp, &out, true);
}

/// The same playbook, unchanged, against the 2003 generation of the portal
/// (`--style 2003`: frameset, table layouts without labels, image buttons,
/// red `<font>` errors, the reference only in an `alert()`).
#[test]
fn parking_permits_on_the_2003_portal() {
    let portal = Portal::start(&[
        "--user",
        PORTAL_USER,
        "--password",
        PORTAL_PASSWORD,
        "--style",
        "2003",
    ]);
    let smtp = SmtpServer::start(&[]);
    let ws = workspace(&smtp);
    let out = run_flagship(&ws, &portal);
    check_first_run(&ws, &portal, &smtp, &out, false);
}

#[test]
fn parking_permits_on_the_2003_portal_failing_every_seventh_submission() {
    let portal = Portal::start(&[
        "--user",
        PORTAL_USER,
        "--password",
        PORTAL_PASSWORD,
        "--style",
        "2003",
        "--fail-every",
        "7",
    ]);
    let smtp = SmtpServer::start(&[]);
    let ws = workspace(&smtp);
    let out = run_flagship(&ws, &portal);
    check_first_run(&ws, &portal, &smtp, &out, true);
}

/// (pid, ppid, command line) of every live process.
fn processes() -> Vec<(i32, i32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r.to_string()) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") {
            continue;
        }
        let ppid = fields.get(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        let cmd = std::fs::read(entry.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        out.push((pid, ppid, cmd));
    }
    out
}

/// The pid of the run's chromedriver (child of the guard clerk started).
fn chromedriver_of(clerk: i32) -> Option<i32> {
    let ps = processes();
    let guards: Vec<i32> = ps
        .iter()
        .filter(|(_, ppid, cmd)| *ppid == clerk && cmd.contains("clerk-browser-guard"))
        .map(|(pid, _, _)| *pid)
        .collect();
    ps.iter()
        .find(|(_, ppid, cmd)| guards.contains(ppid) && cmd.contains("chromedriver"))
        .map(|(pid, _, _)| *pid)
}

/// The pid of the run's main Chromium process (its profile is in `tmp`).
fn chromium_of(tmp: &Path) -> Option<i32> {
    let marker = format!("--user-data-dir={}", tmp.display());
    processes()
        .into_iter()
        .find(|(_, _, cmd)| cmd.contains(&marker) && !cmd.contains("--type="))
        .map(|(pid, _, _)| pid)
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    while !ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn parking_permits_survives_chromedriver_and_chromium_being_killed() {
    let portal = Portal::start(&["--user", PORTAL_USER, "--password", PORTAL_PASSWORD]);
    let smtp = SmtpServer::start(&[]);
    let ws = workspace(&smtp);
    let tmp = ws.path().join("tmp");
    std::fs::create_dir_all(&tmp).expect("mkdir tmp");
    let child = ws
        .cmd()
        .args([
            "run",
            "playbooks/parking-permits.yaml",
            "--input",
            &format!("portal_url={}", portal.url),
            "--json",
        ])
        .env("CLERK_SECRET_PORTAL_USER", PORTAL_USER)
        .env("CLERK_SECRET_PORTAL_PASSWORD", PORTAL_PASSWORD)
        .env("TMPDIR", &tmp)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(ws.path().join("run.log")).expect("log file"))
        .spawn()
        .expect("start clerk run");
    let log = || std::fs::read_to_string(ws.path().join("run.log")).unwrap_or_default();
    let clerk = child.id() as i32;
    let kill = |pid: i32| {
        // SAFETY: sends SIGKILL to a process this test found as the run's.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {pid}");
    };
    wait_until("5 requests entered", || portal.cases().len() >= 5);
    // Not exited (a zombie does not count).
    let alive = || clerk::process::start_time(clerk as u32).is_some();
    let driver = chromedriver_of(clerk).expect("the run's chromedriver");
    kill(driver);
    wait_until("15 requests entered", || {
        assert!(alive(), "the run ended early:\n{}", log());
        portal.cases().len() >= 15
    });
    let chromium = chromium_of(&tmp).expect("the run's Chromium");
    kill(chromium);
    let out = child.wait_with_output().expect("wait for clerk run");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let run: Value = serde_json::from_str(&stdout).expect("JSON outcome");
    let summary = &run["vars"]["summary"];
    // A request whose submission reached the portal just before its browser
    // died is found "already entered" by the retry: entered either way.
    let entered = summary["entered"].as_i64().unwrap() + summary["already"].as_i64().unwrap();
    assert_eq!(entered, 36, "summary: {summary}");
    assert_eq!(summary["rejected"], 4, "summary: {summary}");
    assert_eq!(summary["failed"], 0, "summary: {summary}");
    assert_eq!(
        portal.cases().len(),
        36,
        "every valid request is in the portal, once"
    );
    let restarts: Vec<Value> = audit_events(&ws, run["id"].as_str().unwrap())
        .into_iter()
        .filter(|e| e["kind"] == "browser.restarted")
        .collect();
    assert_eq!(restarts.len(), 2, "one restart per kill: {restarts:#?}");
    // The profile folders of the killed browsers are gone. (A killed Chromium
    // also leaves its own `org.chromium.Chromium.*` scratch folders behind;
    // those are not clerk's.)
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("clerk-browser-")
        })
        .collect();
    assert!(left.is_empty(), "profile folders left in TMPDIR: {left:?}");
}
