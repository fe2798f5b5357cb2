//! Mailbox triggers under the real `clerk serve` and a real dovecot: one run
//! per matching message, messages that arrived while serve was down, a
//! server restart (connection cut server-side) survived and audited, the
//! polling fallback, and `kill -9` in the middle of a message's run.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::imap::{Imap, PASSWORD};
use common::{Backend, Workspace};
use serde_json::Value;

const PLAYBOOK: &str = r#"name: on-mail
inputs:
  message: { type: map }
  pause: { type: string, default: "0s" }
steps:
  - name: Fetch the message
    mail.fetch: { uid: "{{ inputs.message.uid }}", unseen: false, save_attachments: in/mail }
    save_as: got
  - assert: { that: "{{ got | length == 1 }}", message: "the message is gone" }
  - wait: "{{ inputs.pause }}"
  - name: Answer
    mail.send:
      to: "{{ got[0].from_address }}"
      subject: "Re: {{ got[0].subject }}"
      text: "Handled."
  - name: File it
    mail.move: { uid: "{{ inputs.message.uid }}", to: Processed }
"#;

struct Serve {
    child: Option<Child>,
    log: std::path::PathBuf,
}

impl Serve {
    fn start(ws: &Workspace) -> Serve {
        let n = std::fs::read_dir(ws.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("serve-"))
            })
            .count();
        let log = ws.path().join(format!("serve-{n}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut c = ws.cmd();
        c.arg("serve");
        c.env("RUST_LOG", "clerk=debug");
        c.env("CLERK_SECRET_IMAP_PASSWORD", PASSWORD);
        c.stdout(Stdio::null()).stderr(file);
        Serve {
            child: Some(c.spawn().expect("start clerk serve")),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
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

fn wait_for(what: &str, limit: Duration, serve: Option<&Serve>, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}\n{}",
            serve.map(Serve::log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn message(subject: &str, id: &str) -> Vec<u8> {
    format!(
        "From: Citizen <citizen@example.org>\r\nTo: permits@city.example\r\nSubject: {subject}\r\nMessage-ID: <{id}@test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease.\r\n"
    )
    .into_bytes()
}

fn setup(imap: &Imap, bot_extra: &str) -> Workspace {
    setup_on(Backend::Sqlite, imap, bot_extra)
}

fn setup_on(backend: Backend, imap: &Imap, bot_extra: &str) -> Workspace {
    let ws = Workspace::new(backend);
    ws.write("clerk.yaml", &imap.clerk_yaml());
    ws.write("playbooks/on-mail.yaml", PLAYBOOK);
    ws.write(
        "bots/on-mail.yaml",
        &format!(
            "name: on-mail\nplaybook: ../playbooks/on-mail.yaml\ntrigger: {{ mailbox: INBOX, subject: permit{bot_extra} }}\n"
        ),
    );
    ws
}

fn count(ws: &Workspace, sql: &str) -> usize {
    rows(ws, sql)
        .first()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Rows of a query while serve is writing (sqlite3 waits for its lock).
fn rows(ws: &Workspace, sql: &str) -> Vec<String> {
    if let Some(url) = &ws.db_url {
        let out = Command::new("psql")
            .arg(url)
            .args(["-qAt", "-c", sql])
            .output()
            .expect("psql");
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("does not exist") {
            return Vec::new(); // serve has not migrated the new store yet
        }
        assert!(out.status.success(), "{sql}: {err}");
        return String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
    }
    let db = ws.path().join(".clerk/clerk.db");
    if !db.exists() {
        return Vec::new();
    }
    let out = Command::new("sqlite3")
        .arg("-cmd")
        .arg(".timeout 10000")
        .arg(&db)
        .arg(sql)
        .output()
        .expect("sqlite3");
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("no such table") {
        return Vec::new(); // serve has not migrated the new store yet
    }
    assert!(out.status.success(), "{sql}: {err}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn outbox(ws: &Workspace) -> usize {
    std::fs::read_dir(ws.path().join(".clerk/outbox"))
        .map(|rd| rd.count())
        .unwrap_or(0)
}

#[test]
fn one_run_per_message_across_a_server_restart_and_downtime() {
    let mut imap = Imap::start();
    // Waiting before serve ever started: picked up on first contact.
    imap.append("INBOX", &message("permit 1", "p1"));
    imap.append("INBOX", &message("hello", "hello"));
    let ws = setup(&imap, "");
    let serve = Serve::start(&ws);
    let processed = |n: usize| imap.message_ids("Processed").len() >= n;
    wait_for(
        "message 1 handled",
        Duration::from_secs(60),
        Some(&serve),
        || processed(1),
    );

    imap.append("INBOX", &message("permit 2", "p2"));
    wait_for(
        "message 2 handled",
        Duration::from_secs(60),
        Some(&serve),
        || processed(2),
    );

    // The server goes away under the IDLE connection and comes back.
    imap.restart();
    imap.append("INBOX", &message("permit 3", "p3"));
    wait_for(
        "message 3 handled after the restart",
        Duration::from_secs(60),
        Some(&serve),
        || imap.message_ids("Processed").len() >= 3,
    );
    let events = rows(
        &ws,
        "SELECT kind FROM audit_events WHERE kind LIKE 'trigger.%' ORDER BY id",
    );
    assert!(
        events.iter().any(|k| k == "trigger.disconnected"),
        "{events:?}"
    );
    assert!(
        events.iter().any(|k| k == "trigger.reconnected"),
        "{events:?}"
    );

    // `clerk bots list` shows the trigger's last contact.
    let list = ws.clerk(&["bots", "list"]).ok().stdout();
    assert!(
        list.contains("trigger: on-mail watches INBOX on 127.0.0.1:")
            && list.contains("last contact 20"),
        "{list}"
    );
    let json: Value = ws.clerk(&["bots", "list", "--json"]).ok().json();
    assert!(json[0]["trigger"]["last_contact"].is_string(), "{json:#}");
    serve.stop();

    // Mail that arrives while serve is down is handled when it starts.
    imap.append("INBOX", &message("permit 4", "p4"));
    let serve = Serve::start(&ws);
    wait_for(
        "message 4 handled after serve restarted",
        Duration::from_secs(60),
        Some(&serve),
        || imap.message_ids("Processed").len() >= 4,
    );
    wait_for(
        "all runs finished",
        Duration::from_secs(30),
        Some(&serve),
        || {
            count(
                &ws,
                "SELECT COUNT(*) FROM runs WHERE status IN ('queued','running')",
            ) == 0
        },
    );
    serve.stop();

    let mut done = imap.message_ids("Processed");
    done.sort();
    assert_eq!(
        done,
        vec!["<p1@test>", "<p2@test>", "<p3@test>", "<p4@test>"]
    );
    assert_eq!(
        imap.message_ids("INBOX"),
        vec!["<hello@test>"],
        "the non-matching message stays"
    );
    assert_eq!(
        rows(&ws, "SELECT status, COUNT(*) FROM runs GROUP BY status"),
        vec!["succeeded|4"]
    );
    assert_eq!(outbox(&ws), 4, "one answer per message");
    assert_eq!(count(&ws, "SELECT COUNT(*) FROM imap_trigger_runs"), 4);
    assert!(ws.clerk(&["audit", "verify"]).code() == 0);
}

#[test]
fn kill_9_while_a_message_is_handled_then_restart_handles_it_exactly_once() {
    let imap = Imap::start();
    let ws = setup(&imap, "");
    ws.write(
        "bots/on-mail.yaml",
        "name: on-mail\nplaybook: ../playbooks/on-mail.yaml\ntrigger: { mailbox: INBOX, subject: permit }\ninputs: { pause: 3s }\n",
    );
    let serve = Serve::start(&ws);
    imap.append("INBOX", &message("permit crash", "crash"));
    // Kill it once the message has been fetched and before it is answered.
    wait_for(
        "the message fetched",
        Duration::from_secs(60),
        Some(&serve),
        || {
            count(
                &ws,
                "SELECT COUNT(*) FROM audit_events WHERE action = 'mail.fetch' AND kind = 'action'",
            ) >= 1
        },
    );
    serve.kill9();
    assert_eq!(outbox(&ws), 0, "killed before the answer");
    assert_eq!(imap.message_ids("Processed").len(), 0);

    let serve = Serve::start(&ws);
    wait_for(
        "the message handled after the restart",
        Duration::from_secs(60),
        Some(&serve),
        || {
            imap.message_ids("Processed").len() == 1
                && count(&ws, "SELECT COUNT(*) FROM runs WHERE status = 'succeeded'") == 1
        },
    );
    // Give a wrongly queued second run the chance to show up.
    wait_for(
        "the queue to drain",
        Duration::from_secs(20),
        Some(&serve),
        || {
            count(
                &ws,
                "SELECT COUNT(*) FROM runs WHERE status IN ('queued','running')",
            ) == 0
        },
    );
    serve.stop();
    assert_eq!(imap.message_ids("Processed"), vec!["<crash@test>"]);
    assert!(imap.message_ids("INBOX").is_empty());
    assert_eq!(outbox(&ws), 1, "answered exactly once");
    // The interrupted run and its continuation (on_interrupt: resume), one
    // lineage: the message is one job, handled once.
    assert_eq!(
        count(&ws, "SELECT COUNT(*) FROM runs"),
        2,
        "a run and its resume"
    );
    assert_eq!(
        count(&ws, "SELECT COUNT(DISTINCT lineage) FROM runs"),
        1,
        "one lineage"
    );
    assert_eq!(count(&ws, "SELECT COUNT(*) FROM imap_trigger_runs"), 1);
    assert_eq!(
        count(
            &ws,
            "SELECT COUNT(*) FROM runs WHERE resumed_from IS NOT NULL"
        ),
        1,
        "the continuation resumes the interrupted run"
    );
    // The resumed run got its message again (the journal says: fetched, not done).
    let redelivered = rows(
        &ws,
        "SELECT COUNT(*) FROM audit_events WHERE action = 'mail.fetch' AND kind = 'action'",
    );
    assert_eq!(redelivered, vec!["2"]);
    assert_eq!(
        count(
            &ws,
            "SELECT COUNT(*) FROM imap_journal WHERE state = 'done'"
        ),
        1
    );
}

#[test]
fn polling_fallback_when_the_server_has_no_idle() {
    let imap = Imap::start_with(false);
    let ws = setup(&imap, ", poll: 1s");
    let serve = Serve::start(&ws);
    wait_for(
        "the trigger connected",
        Duration::from_secs(30),
        Some(&serve),
        || {
            count(
                &ws,
                "SELECT COUNT(*) FROM imap_trigger_state WHERE status = 'polling'",
            ) == 1
        },
    );
    imap.append("INBOX", &message("permit by polling", "poll"));
    wait_for(
        "the message handled",
        Duration::from_secs(60),
        Some(&serve),
        || imap.message_ids("Processed").len() == 1,
    );
    serve.stop();
}

#[test]
fn a_triggered_bot_must_take_the_message() {
    let imap = Imap::start_with(false);
    let ws = setup(&imap, "");
    ws.write("playbooks/plain.yaml", "name: plain\nsteps:\n  - log: hi\n");
    ws.write(
        "bots/plain.yaml",
        "name: plain\nplaybook: ../playbooks/plain.yaml\ntrigger: { mailbox: INBOX }\n",
    );
    ws.write(
        "bots/long.yaml",
        "name: long\nplaybook: ../playbooks/on-mail.yaml\ntrigger: { mailbox: INBOX, keepalive: 2h }\n",
    );
    let r = ws.clerk(&["validate", "bots/plain.yaml", "bots/long.yaml"]);
    assert_eq!(r.code(), 2);
    let out = r.stdout() + &r.stderr();
    assert!(out.contains("has no input `message`"), "{out}");
    assert!(out.contains("29 minutes"), "{out}");
    ws.clerk(&["validate", "bots/on-mail.yaml"]).ok();
}

/// The flagship job by mail, end to end: the 40-request export arrives
/// attached to a mail; the bot enters the 36 valid requests into the real
/// portal, answers the sender with both lists over SMTP, and files the mail
/// in Processed.
#[test]
fn flagship_by_mail_enters_36_answers_and_files_the_mail() {
    use common::portal::Portal;
    use common::smtp::SmtpServer;
    const USER: &str = "permits-bot";
    const PASS: &str = "Pw-by-mail-5521";
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let portal = Portal::start(&["--user", USER, "--password", PASS]);
    let smtp = SmtpServer::start(&[]);
    let imap = Imap::start();
    let ws = Workspace::new(Backend::Sqlite);
    ws.write(
        "clerk.yaml",
        &format!(
            "{}mail:\n  transport: smtp\n  from: clerk@city.example\n  smtp:\n    host: 127.0.0.1\n    port: {}\n    tls: none\n",
            imap.clerk_yaml(),
            smtp.port
        ),
    );
    ws.write(
        "playbooks/permit-requests-by-mail.yaml",
        &std::fs::read_to_string(repo.join("playbooks/permit-requests-by-mail.yaml")).unwrap(),
    );
    // Its request-entering steps are the flagship's own (`include:`).
    ws.write(
        "playbooks/parking-permits.yaml",
        &std::fs::read_to_string(repo.join("playbooks/parking-permits.yaml")).unwrap(),
    );
    let bot = std::fs::read_to_string(repo.join("bots/permit-requests-by-mail.yaml")).unwrap();
    ws.write(
        "bots/permit-requests-by-mail.yaml",
        &format!("{bot}inputs:\n  portal_url: \"{}\"\n", portal.url),
    );
    let xlsx = std::fs::read(repo.join("fixtures/sheets/permit-requests.xlsx")).unwrap();
    let mut b64 = String::new();
    {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut line = 0;
        for c in xlsx.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
                b64.push(if i <= c.len() {
                    T[(n >> shift) as usize & 63] as char
                } else {
                    '='
                });
            }
            line += 4;
            if line >= 76 {
                b64.push_str("\r\n");
                line = 0;
            }
        }
    }
    let mail = format!(
        "From: Permits Desk <desk@city.example>\r\nTo: permits@city.example\r\nSubject: Parking permit requests, week 5\r\nMessage-ID: <requests-w5@city.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe week's requests are attached.\r\n--b1\r\nContent-Type: application/vnd.openxmlformats-officedocument.spreadsheetml.sheet\r\nContent-Disposition: attachment; filename=\"permit-requests.xlsx\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b1--\r\n"
    );
    imap.append("INBOX", mail.as_bytes());

    let mut c = ws.cmd();
    c.arg("serve");
    c.env("RUST_LOG", "clerk=info");
    c.env("CLERK_SECRET_IMAP_PASSWORD", PASSWORD);
    c.env("CLERK_SECRET_PORTAL_USER", USER);
    c.env("CLERK_SECRET_PORTAL_PASSWORD", PASS);
    let log = ws.path().join("serve-flagship.log");
    c.stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let serve = Serve {
        child: Some(c.spawn().expect("start clerk serve")),
        log,
    };
    wait_for(
        "the request mail filed",
        Duration::from_secs(400),
        Some(&serve),
        || {
            imap.message_ids("Processed").len() + imap.message_ids("Failed").len() == 1
                && count(
                    &ws,
                    "SELECT COUNT(*) FROM runs WHERE status IN ('queued','running')",
                ) == 0
        },
    );
    serve.stop();
    assert_eq!(
        imap.message_ids("Processed"),
        vec!["<requests-w5@city.example>"],
        "failed: {:?}\n{}",
        imap.message_ids("Failed"),
        rows(&ws, "SELECT status, error FROM runs").join("\n")
    );
    assert!(imap.message_ids("INBOX").is_empty());
    assert_eq!(
        portal.cases().len(),
        36,
        "the 36 valid requests are in the portal"
    );

    let sent = smtp.messages();
    assert_eq!(sent.len(), 1, "one answer");
    let raw = String::from_utf8_lossy(&sent[0].raw).into_owned();
    assert_eq!(
        sent[0].meta["rcpt_tos"],
        serde_json::json!(["desk@city.example"]),
        "{}",
        sent[0].meta
    );
    assert!(
        raw.contains("In-Reply-To: <requests-w5@city.example>"),
        "{raw}"
    );
    assert!(raw.contains("Re: Parking permit requests, week 5"), "{raw}");
    let text = common::smtp::leaves(&sent[0].parsed["body"])
        .iter()
        .filter_map(|p| p["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains("entered:  36") && text.contains("rejected: 4"),
        "{text}\n{raw}"
    );
    let attachments = raw.matches("Content-Disposition: attachment").count();
    assert_eq!(attachments, 2, "both lists attached");
    // The 4 rejections are business exceptions of the job, which succeeded.
    assert_eq!(
        rows(&ws, "SELECT status FROM runs"),
        vec!["succeeded_with_exceptions"],
        "{}",
        serve_log(&ws)
    );
}

fn serve_log(ws: &Workspace) -> String {
    std::fs::read_to_string(ws.path().join("serve-flagship.log")).unwrap_or_default()
}

/// The mailbox is rebuilt (new UIDVALIDITY): the change is audited and the
/// message that already had a run is recognised by its Message-ID.
#[test]
fn a_uidvalidity_change_is_reported_not_reprocessed() {
    let mut imap = Imap::start();
    let ws = setup(&imap, "");
    ws.write(
        "playbooks/note.yaml",
        "name: note\ninputs:\n  message: { type: map }\nsteps:\n  - log: \"{{ inputs.message.subject }}\"\n",
    );
    ws.write(
        "bots/on-mail.yaml",
        "name: on-mail\nplaybook: ../playbooks/note.yaml\ntrigger: { mailbox: INBOX, subject: permit }\n",
    );
    imap.append("INBOX", &message("permit one", "one"));
    let serve = Serve::start(&ws);
    wait_for(
        "the first run",
        Duration::from_secs(60),
        Some(&serve),
        || count(&ws, "SELECT COUNT(*) FROM runs WHERE status = 'succeeded'") == 1,
    );
    serve.stop();
    let before = rows(&ws, "SELECT uidvalidity FROM imap_trigger_state");
    // Rebuild the mailbox's UID list: dovecot gives it a new UIDVALIDITY.
    imap.stop();
    let maildir = imap.dir.path().join("mail").join(common::imap::USER);
    for e in std::fs::read_dir(&maildir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("dovecot") {
            let _ = std::fs::remove_file(&p);
        }
    }
    std::thread::sleep(Duration::from_millis(1100)); // UIDVALIDITY is a timestamp
    imap.launch();
    imap.append("INBOX", &message("permit two", "two"));
    let serve = Serve::start(&ws);
    wait_for(
        "the second run",
        Duration::from_secs(60),
        Some(&serve),
        || {
            count(&ws, "SELECT COUNT(*) FROM runs WHERE status = 'succeeded'") == 2
                && count(
                    &ws,
                    "SELECT COUNT(*) FROM imap_trigger_state WHERE last_uid >= 2",
                ) == 1
        },
    );
    serve.stop();
    let after = rows(&ws, "SELECT uidvalidity FROM imap_trigger_state");
    assert_ne!(before, after, "the UIDVALIDITY did change");
    assert_eq!(
        count(
            &ws,
            "SELECT COUNT(*) FROM audit_events WHERE kind = 'trigger.uidvalidity_changed'"
        ),
        1
    );
    assert_eq!(
        count(&ws, "SELECT COUNT(*) FROM runs"),
        2,
        "message one did not run again"
    );
}

#[test]
fn a_trigger_on_postgres_queues_each_message_once() {
    let imap = Imap::start();
    let ws = setup_on(Backend::Postgres, &imap, "");
    let serve = Serve::start(&ws);
    wait_for(
        "the trigger connected",
        Duration::from_secs(60),
        Some(&serve),
        || {
            count(
                &ws,
                "SELECT COUNT(*) FROM imap_trigger_state WHERE status = 'idle'",
            ) == 1
        },
    );
    imap.append("INBOX", &message("permit a", "a"));
    imap.append("INBOX", &message("permit b", "b"));
    wait_for(
        "both handled",
        Duration::from_secs(90),
        Some(&serve),
        || count(&ws, "SELECT COUNT(*) FROM runs WHERE status = 'succeeded'") == 2,
    );
    serve.stop();
    let mut done = imap.message_ids("Processed");
    done.sort();
    assert_eq!(done, vec!["<a@test>", "<b@test>"]);
    assert_eq!(count(&ws, "SELECT COUNT(*) FROM imap_trigger_runs"), 2);
    assert_eq!(count(&ws, "SELECT COUNT(*) FROM runs"), 2);
    assert_eq!(
        count(
            &ws,
            "SELECT COUNT(*) FROM imap_trigger_state WHERE last_contact IS NOT NULL AND status = 'stopped'"
        ),
        1
    );
}

#[test]
fn sighup_reloads_the_trigger() {
    let imap = Imap::start();
    let ws = setup(&imap, "");
    let serve = Serve::start(&ws);
    let connected = || {
        count(
            &ws,
            "SELECT COUNT(*) FROM audit_events WHERE kind = 'trigger.connected'",
        )
    };
    wait_for(
        "the trigger connected",
        Duration::from_secs(60),
        Some(&serve),
        || connected() == 1,
    );
    ws.write(
        "bots/on-mail.yaml",
        "name: on-mail\nplaybook: ../playbooks/on-mail.yaml\ntrigger: { mailbox: INBOX, subject: urgent }\n",
    );
    let pid = serve.child.as_ref().unwrap().id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_for(
        "the trigger restarted",
        Duration::from_secs(60),
        Some(&serve),
        || connected() == 2,
    );
    imap.append("INBOX", &message("permit, old filter", "old"));
    imap.append("INBOX", &message("urgent: new filter", "new"));
    wait_for(
        "the urgent mail handled",
        Duration::from_secs(60),
        Some(&serve),
        || {
            imap.message_ids("Processed") == vec!["<new@test>"]
                && count(
                    &ws,
                    "SELECT COUNT(*) FROM runs WHERE status IN ('queued','running')",
                ) == 0
        },
    );
    serve.stop();
    assert_eq!(imap.message_ids("INBOX"), vec!["<old@test>"]);
    assert_eq!(count(&ws, "SELECT COUNT(*) FROM runs"), 1);
}

/// A request mail without a spreadsheet: the sender is told why, the mail
/// goes to Failed, the run fails (so the team is notified).
#[test]
fn flagship_by_mail_files_a_mail_without_a_spreadsheet_as_failed() {
    use common::smtp::SmtpServer;
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let smtp = SmtpServer::start(&[]);
    let imap = Imap::start();
    let ws = Workspace::new(Backend::Sqlite);
    ws.write(
        "clerk.yaml",
        &format!(
            "{}mail:\n  transport: smtp\n  from: clerk@city.example\n  smtp:\n    host: 127.0.0.1\n    port: {}\n    tls: none\n",
            imap.clerk_yaml(),
            smtp.port
        ),
    );
    ws.write(
        "playbooks/permit-requests-by-mail.yaml",
        &std::fs::read_to_string(repo.join("playbooks/permit-requests-by-mail.yaml")).unwrap(),
    );
    // Its request-entering steps are the flagship's own (`include:`).
    ws.write(
        "playbooks/parking-permits.yaml",
        &std::fs::read_to_string(repo.join("playbooks/parking-permits.yaml")).unwrap(),
    );
    ws.write(
        "bots/permit-requests-by-mail.yaml",
        &std::fs::read_to_string(repo.join("bots/permit-requests-by-mail.yaml")).unwrap(),
    );
    imap.append(
        "INBOX",
        &message("permit requests (forgot the file)", "nofile"),
    );
    let serve = Serve::start(&ws);
    wait_for(
        "the mail filed",
        Duration::from_secs(90),
        Some(&serve),
        || imap.message_ids("Failed").len() == 1 && smtp.messages().len() == 2,
    );
    serve.stop();
    assert!(imap.message_ids("INBOX").is_empty());
    assert!(imap.message_ids("Processed").is_empty());
    assert_eq!(rows(&ws, "SELECT status FROM runs"), vec!["failed"]);
    let sent = smtp.messages();
    let to_sender: Vec<&common::smtp::Received> = sent
        .iter()
        .filter(|m| m.meta["rcpt_tos"] == serde_json::json!(["citizen@example.org"]))
        .collect();
    assert_eq!(to_sender.len(), 1, "one answer to the sender");
    let raw = String::from_utf8_lossy(&to_sender[0].raw).into_owned();
    assert!(raw.contains("In-Reply-To: <nofile@test>"), "{raw}");
    let text: String = common::smtp::leaves(&to_sender[0].parsed["body"])
        .iter()
        .filter_map(|p| p["text"].as_str())
        .collect();
    assert!(
        text.contains("expected one .xlsx attachment, found 0"),
        "{text}"
    );
    assert!(
        sent.iter()
            .any(|m| m.meta["rcpt_tos"] == serde_json::json!(["rpa-team@city.example"])),
        "the team is notified"
    );
}

/// A run interrupted after fetching its message, resumed after the mailbox
/// got a new UIDVALIDITY: the journal notices and the run stops with both
/// values instead of guessing which message UID 1 now is.
#[test]
fn a_resumed_run_refuses_a_changed_uidvalidity() {
    let mut imap = Imap::start();
    let ws = setup(&imap, "");
    ws.write(
        "bots/on-mail.yaml",
        "name: on-mail\nplaybook: ../playbooks/on-mail.yaml\ntrigger: { mailbox: INBOX, subject: permit }\ninputs: { pause: 3s }\n",
    );
    let serve = Serve::start(&ws);
    imap.append("INBOX", &message("permit renumbered", "renum"));
    wait_for(
        "the message fetched",
        Duration::from_secs(60),
        Some(&serve),
        || {
            count(
                &ws,
                "SELECT COUNT(*) FROM audit_events WHERE action = 'mail.fetch' AND kind = 'action'",
            ) >= 1
        },
    );
    serve.kill9();
    imap.stop();
    let maildir = imap.dir.path().join("mail").join(common::imap::USER);
    for e in std::fs::read_dir(&maildir).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("dovecot")
        {
            let _ = std::fs::remove_file(&p);
        }
    }
    std::thread::sleep(Duration::from_millis(1100)); // UIDVALIDITY is a timestamp
    imap.launch();
    let serve = Serve::start(&ws);
    wait_for(
        "the resumed run to end",
        Duration::from_secs(60),
        Some(&serve),
        || count(&ws, "SELECT COUNT(*) FROM runs WHERE status = 'failed'") == 1,
    );
    serve.stop();
    let error = rows(&ws, "SELECT error FROM runs").join("\n");
    assert!(error.contains("the UIDVALIDITY of INBOX"), "{error}");
    assert!(error.contains("will not guess"), "{error}");
    assert_eq!(
        outbox(&ws),
        0,
        "no answer for a message it cannot be sure of"
    );
    assert_eq!(
        imap.message_ids("INBOX"),
        vec!["<renum@test>"],
        "left for a person"
    );
    // The interrupted run and its continuation, one lineage.
    assert_eq!(count(&ws, "SELECT COUNT(*) FROM runs"), 2);
    assert_eq!(count(&ws, "SELECT COUNT(DISTINCT lineage) FROM runs"), 1);
    assert_eq!(
        count(
            &ws,
            "SELECT COUNT(*) FROM audit_events WHERE kind = 'trigger.uidvalidity_changed'"
        ),
        1
    );
}

/// A plain HTTP/1.1 GET of the dashboard: (status, JSON body).
fn healthz(url: &str) -> (u16, Value) {
    use std::io::{Read as _, Write as _};
    let addr = url.trim_start_matches("http://");
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, Value::Null);
    };
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    // The JSON object is the body (axum sends it with a length, not chunked).
    let body = text
        .find("\r\n\r\n")
        .map(|i| &text[i + 4..])
        .unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// `/healthz` lists the trigger with its last contact, turns unhealthy when
/// the IMAP server is gone (dovecot killed: the connection is cut and cannot
/// be made again) for longer than the documented limit (keepalive + 3 ×
/// imap.timeout), and healthy again once the server is back; `clerk bots
/// list` shows the last contact too.
#[test]
fn healthz_follows_the_triggers_last_contact() {
    let mut imap = Imap::start();
    let ws = setup(&imap, ", keepalive: 2s, poll: 2s");
    let mut add = ws.cmd();
    add.args(["users", "add", "ada", "--role", "admin", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = add.spawn().expect("clerk users add");
    {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"ad-pass-3c7e1f\n")
            .unwrap();
    }
    assert!(child.wait().unwrap().success());
    let log = ws.path().join("serve-http.log");
    let mut c = ws.cmd();
    c.args(["serve", "--http", "127.0.0.1:0"])
        .env("RUST_LOG", "clerk=debug")
        .env("CLERK_SECRET_IMAP_PASSWORD", PASSWORD)
        .env("CLERK_IMAP_TIMEOUT", "2s")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let serve = Serve {
        child: Some(c.spawn().expect("start clerk serve")),
        log: log.clone(),
    };
    let mut url = String::new();
    wait_for(
        "the dashboard",
        Duration::from_secs(30),
        Some(&serve),
        || {
            let text = serve.log();
            match text
                .lines()
                .find(|l| l.contains("dashboard listening"))
                .and_then(|l| l.find("http://").map(|i| l[i..].to_string()))
            {
                Some(u) => {
                    url = u
                        .chars()
                        .take_while(|c| !c.is_whitespace() && *c != '"')
                        .collect::<String>()
                        .trim_end_matches('/')
                        .to_string();
                    true
                }
                None => false,
            }
        },
    );
    // Limit: max(keepalive, poll) 2 s + 3 × imap.timeout 2 s.
    let mut last = (0, Value::Null);
    wait_for(
        "healthy with the trigger",
        Duration::from_secs(30),
        Some(&serve),
        || {
            last = healthz(&url);
            last.0 == 200 && last.1["triggers"][0]["healthy"] == true
        },
    );
    let t = &last.1["triggers"][0];
    assert_eq!(t["bot"], "on-mail");
    assert_eq!(t["mailbox"], "INBOX");
    assert_eq!(t["limit_s"], 8);
    assert!(t["last_contact"].is_string(), "{t}");
    // Contact is renewed at every keepalive: still healthy well past the limit.
    let first = t["last_contact"].clone();
    wait_for(
        "a renewed contact",
        Duration::from_secs(30),
        Some(&serve),
        || {
            last = healthz(&url);
            last.1["triggers"][0]["last_contact"] != first
        },
    );
    assert_eq!(last.0, 200, "{}", last.1);

    // The server dies and stays down: the connection is cut, reconnects fail.
    imap.stop();
    let down = Instant::now();
    wait_for(
        "unhealthy without the server",
        Duration::from_secs(60),
        Some(&serve),
        || {
            last = healthz(&url);
            last.0 == 503
        },
    );
    let problems = last.1["problems"].to_string();
    assert!(
        problems.contains("mailbox trigger of bot on-mail (INBOX) last reached its server"),
        "{}",
        last.1
    );
    assert_eq!(last.1["triggers"][0]["healthy"], false);
    // Not before the limit (it is no flapping alarm): contact was at most a
    // keepalive before the stop, and the limit is 8 s after that contact.
    assert!(
        down.elapsed() >= Duration::from_secs(8 - 2 - 1),
        "unhealthy after only {:?}",
        down.elapsed()
    );
    let list = ws.clerk(&["bots", "list"]);
    assert!(
        list.stdout().contains("trigger: on-mail watches INBOX")
            && list.stdout().contains("last contact 20"),
        "{}",
        list.stdout()
    );

    // Back: healthy again, and mail that arrived meanwhile is handled.
    imap.launch();
    imap.append("INBOX", &message("permit h", "ph"));
    wait_for(
        "healthy again",
        Duration::from_secs(90),
        Some(&serve),
        || {
            last = healthz(&url);
            last.0 == 200
        },
    );
    wait_for(
        "the message handled",
        Duration::from_secs(60),
        Some(&serve),
        || imap.message_ids("Processed").len() == 1,
    );
    serve.stop();
}

/// The message as a work item of the job: keyed by (mailbox, UIDVALIDITY,
/// UID) through mail.fetch's `item_key`, with a `verify:` that looks whether
/// an in-doubt message was already filed.
const WORK_ITEM_PLAYBOOK: &str = r#"name: on-mail
inputs:
  message: { type: map }
  pause: { type: string, default: "0s" }
steps:
  - name: Fetch the message
    mail.fetch: { uid: "{{ inputs.message.uid }}", unseen: false, save_attachments: in/mail }
    save_as: got
  - id: handle
    for_each: "{{ got }}"
    as: m
    checkpoint: "{{ m.item_key }}"
    verify:
      steps:
        - mail.fetch: { uid: "{{ m.uid }}", unseen: false, save_attachments: in/mail }
          save_as: still
      output: "{{ {'filed': true} if still | length == 0 else none }}"
    steps:
      - wait: "{{ inputs.pause }}"
      - name: Answer
        mail.send:
          to: "{{ m.from_address }}"
          subject: "Re: {{ m.subject }}"
          text: "Handled."
      - name: File it
        mail.move: { uid: "{{ m.uid }}", to: Processed }
    output: { filed: true }
"#;

/// `kill -9` of serve while the message's work item is in progress; after
/// the restart the continuation finds the item in doubt, verifies it (still
/// in the mailbox: not filed), handles it, and the ledger holds exactly one
/// item for the message, `done`, keyed by mailbox, UIDVALIDITY and UID. A
/// second delivery attempt of the same lineage (the resumed run's own fetch)
/// does not make a second item.
#[test]
fn a_message_is_one_work_item_done_once_across_kill_9() {
    let imap = Imap::start();
    let ws = setup(&imap, "");
    ws.write("playbooks/on-mail.yaml", WORK_ITEM_PLAYBOOK);
    ws.write(
        "bots/on-mail.yaml",
        "name: on-mail\nplaybook: ../playbooks/on-mail.yaml\ntrigger: { mailbox: INBOX, subject: permit }\ninputs: { pause: 3s }\n",
    );
    let serve = Serve::start(&ws);
    imap.append("INBOX", &message("permit item", "item"));
    wait_for(
        "the message's work item started",
        Duration::from_secs(60),
        Some(&serve),
        || {
            count(
                &ws,
                "SELECT COUNT(*) FROM work_items WHERE state = 'in_progress'",
            ) == 1
        },
    );
    serve.kill9();
    assert_eq!(outbox(&ws), 0, "killed before the answer");
    let key = rows(&ws, "SELECT item_key FROM work_items");
    let uv = imap.session().command("SELECT INBOX").text;
    assert_eq!(key.len(), 1);
    assert!(
        key[0].starts_with("INBOX/") && key[0].ends_with("/1"),
        "{key:?}"
    );
    let uidvalidity = key[0].split('/').nth(1).unwrap().to_string();
    assert!(uv.contains(&format!("UIDVALIDITY {uidvalidity}")), "{uv}");

    let serve = Serve::start(&ws);
    wait_for(
        "the message handled after the restart",
        Duration::from_secs(60),
        Some(&serve),
        || {
            imap.message_ids("Processed").len() == 1
                && count(&ws, "SELECT COUNT(*) FROM runs WHERE status = 'succeeded'") == 1
        },
    );
    wait_for(
        "the queue to drain",
        Duration::from_secs(20),
        Some(&serve),
        || {
            count(
                &ws,
                "SELECT COUNT(*) FROM runs WHERE status IN ('queued','running')",
            ) == 0
        },
    );
    serve.stop();
    assert_eq!(outbox(&ws), 1, "answered exactly once");
    assert_eq!(
        rows(&ws, "SELECT item_key || ' ' || state FROM work_items"),
        vec![format!("{} done", key[0])],
        "one work item for the message, done"
    );
    // In doubt after the kill, looked up (still in the mailbox), then handled.
    assert_eq!(
        count(
            &ws,
            "SELECT COUNT(*) FROM audit_events WHERE kind = 'item.verified'"
        ),
        1
    );
    assert_eq!(
        count(
            &ws,
            &format!(
                "SELECT COUNT(*) FROM audit_events WHERE kind = 'item.finished' AND item_key = '{}'",
                key[0]
            )
        ),
        1,
        "finished once"
    );
    assert_eq!(count(&ws, "SELECT COUNT(DISTINCT lineage) FROM runs"), 1);
}
