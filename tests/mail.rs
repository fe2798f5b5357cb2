//! `mail.send`, end to end: the real `clerk` binary against a real SMTP server
//! (Python's aiosmtpd, `tests/support/smtp_server.py`, on a free loopback
//! port) and the file outbox. What arrives is parsed by Python's standard
//! `email` package (`tests/support/eml.py`), as a mail reader would.
//!
//! The interpreter is /usr/bin/python3 (Debian's, with `python3-aiosmtpd`);
//! set CLERK_TEST_PYTHON to use another.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::smtp::{SmtpServer, header, leaves, one_header, parse_eml};
use common::{Backend, Workspace, dump_store};
use serde_json::Value;

// ---------------------------------------------------------------- support

fn sha256(bytes: &[u8]) -> String {
    clerk::fsutil::sha256_hex(bytes)
}

/// clerk.yaml for SMTP on `port`, with extra `smtp:` lines.
fn smtp_config(port: u16, extra: &str) -> String {
    format!(
        "mail:\n  transport: smtp\n  from: \"Clerk Bot <clerk@city.example>\"\n  smtp:\n    host: 127.0.0.1\n    port: {port}\n    timeout: 5s\n{extra}"
    )
}

/// The `action` events of mail.send, from the audit export.
fn mail_events(ws: &Workspace) -> Vec<Value> {
    ws.clerk(&["audit", "export", "--format", "jsonl"])
        .ok()
        .stdout()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("jsonl"))
        .filter(|e| e["kind"] == "action" && e["action"] == "mail.send")
        .collect()
}

/// Bytes that survive no careless encoding: CR, LF, NUL, high bytes.
fn binary_blob() -> Vec<u8> {
    (0..3000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .chain([b'\r', b'\n', 0, b'\n', b'.', b'\r', b'\n'])
        .collect()
}

const CSV: &str = "permit;name\r\n1001;Zoë D'Hondt\n1002;Łukasz\r\n.\r\nlast line without newline";

fn write_attachments(ws: &Workspace) -> Vec<u8> {
    let blob = binary_blob();
    let p = ws.path().join("out/renewals.xlsx");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, &blob).unwrap();
    ws.write("out/rejected.csv", CSV);
    blob
}

const SUBJECT: &str = "Réf. dossier — Brussel/Bruxelles";

const REPORT_PLAYBOOK: &str = r#"name: report
steps:
  - name: Mail the report
    mail.send:
      to: "Permits Team <permits@city.example>, Zoë Peeters <zoe@city.example>"
      cc: [audit@city.example]
      bcc: archive@city.example
      reply_to: helpdesk@city.example
      subject: "Réf. dossier — Brussel/Bruxelles"
      text: "12 renewals entered; 3 rejected (Zoë, Łukasz, François).\nSee the attachments — merci.\n"
      html: "<p>12 renewals entered; <b>3</b> rejected.</p>"
      attachments: [out/renewals.xlsx, out/rejected.csv]
      headers: { X-Batch: "2025-W05" }
    save_as: sent
"#;

// ---------------------------------------------------------------- SMTP

#[test]
fn smtp_delivers_text_html_and_two_byte_identical_attachments() {
    let server = SmtpServer::start(&[]);
    let ws = Workspace::new(Backend::Sqlite);
    ws.write("clerk.yaml", &smtp_config(server.port, "    tls: none\n"));
    let blob = write_attachments(&ws);
    ws.write("report.yaml", REPORT_PLAYBOOK);

    let r = ws.clerk(&["run", "report.yaml", "--json"]).ok();
    let out = r.json();
    assert_eq!(out["status"], "succeeded");
    let sent = &out["vars"]["sent"];
    assert_eq!(sent["transport"], "smtp");
    assert_eq!(sent["already_sent"], false);
    let accepted: Vec<&str> = sent["accepted"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        accepted,
        [
            "permits@city.example",
            "zoe@city.example",
            "audit@city.example",
            "archive@city.example"
        ]
    );

    let msgs = server.messages();
    assert_eq!(msgs.len(), 1, "exactly one message reaches the server");
    let (meta, msg) = (&msgs[0].meta, &msgs[0].parsed);
    assert_eq!(meta["mail_from"], "clerk@city.example");
    assert_eq!(
        meta["rcpt_tos"],
        serde_json::json!([
            "permits@city.example",
            "zoe@city.example",
            "audit@city.example",
            "archive@city.example"
        ])
    );
    assert_eq!(msg["defects"], serde_json::json!([]));
    assert_eq!(one_header(msg, "subject"), SUBJECT);
    assert_eq!(one_header(msg, "from"), "Clerk Bot <clerk@city.example>");
    assert_eq!(
        one_header(msg, "to"),
        "Permits Team <permits@city.example>, Zoë Peeters <zoe@city.example>"
    );
    assert_eq!(one_header(msg, "cc"), "audit@city.example");
    assert!(header(msg, "bcc").is_empty(), "Bcc must not be a header");
    assert_eq!(one_header(msg, "reply-to"), "helpdesk@city.example");
    assert_eq!(one_header(msg, "x-batch"), "2025-W05");
    assert_eq!(one_header(msg, "auto-submitted"), "auto-generated");
    assert_eq!(one_header(msg, "x-clerk-run"), out["id"].as_str().unwrap());
    assert_eq!(
        one_header(msg, "message-id"),
        sent["message_id"].as_str().unwrap()
    );

    // multipart/mixed [ multipart/alternative [text, html], xlsx, csv ]
    let body = &msg["body"];
    assert_eq!(body["content_type"], "multipart/mixed");
    assert_eq!(body["parts"][0]["content_type"], "multipart/alternative");
    let parts = leaves(body);
    assert_eq!(parts.len(), 4, "{body:#}");
    assert_eq!(parts[0]["content_type"], "text/plain");
    assert_eq!(
        parts[0]["text"].as_str().unwrap().replace("\r\n", "\n"),
        "12 renewals entered; 3 rejected (Zoë, Łukasz, François).\nSee the attachments — merci.\n"
    );
    assert_eq!(parts[1]["content_type"], "text/html");
    assert!(parts[1]["text"].as_str().unwrap().contains("<b>3</b>"));
    assert_eq!(parts[2]["filename"], "renewals.xlsx");
    assert_eq!(parts[2]["disposition"], "attachment");
    assert_eq!(
        parts[2]["content_type"],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    assert_eq!(parts[2]["sha256"], sha256(&blob));
    assert_eq!(parts[2]["size"], blob.len());
    assert_eq!(parts[3]["filename"], "rejected.csv");
    assert_eq!(parts[3]["content_type"], "text/csv");
    assert_eq!(
        parts[3]["sha256"],
        sha256(CSV.as_bytes()),
        "CSV byte for byte"
    );

    // The audit: recipients, subject, message id, hashes, reply, attempt.
    let events = mail_events(&ws);
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["outcome"], "ok");
    let d = &e["detail"];
    assert_eq!(d["transport"], "smtp");
    assert_eq!(d["server"], format!("127.0.0.1:{}", server.port));
    assert_eq!(d["from"], "Clerk Bot <clerk@city.example>");
    assert_eq!(d["bcc"], serde_json::json!(["archive@city.example"]));
    assert_eq!(d["subject"], SUBJECT);
    assert_eq!(d["message_id"], sent["message_id"]);
    assert_eq!(
        d["body_sha256"],
        sha256(
            "12 renewals entered; 3 rejected (Zoë, Łukasz, François).\nSee the attachments — merci.\n"
                .as_bytes()
        )
    );
    assert_eq!(d["attachments"][0]["sha256"], sha256(&blob));
    assert_eq!(d["attachments"][0]["size"], blob.len());
    assert_eq!(d["attachments"][1]["name"], "rejected.csv");
    assert_eq!(d["attachments"][1]["sha256"], sha256(CSV.as_bytes()));
    assert!(d["reply"].as_str().unwrap().starts_with("250 "), "{d:#}");
    assert!(d["reply"].as_str().unwrap().contains("queued as TEST0001"));
    assert_eq!(d["attempt"], 1);
    assert!(
        e["target"]
            .as_str()
            .unwrap()
            .contains("archive@city.example"),
        "{e:#}"
    );
    ws.clerk(&["audit", "verify"]).ok();
}

const SIMPLE_PLAYBOOK: &str = r#"name: simple
steps:
  - mail.send:
      to: permits@city.example
      subject: "Daily report"
      text: "All done."
      attachments: [out/rejected.csv]
    save_as: sent
"#;

fn check_no_password(ws: &Workspace, password: &str, outputs: &[&common::Run]) {
    for r in outputs {
        assert!(!r.stdout().contains(password), "password in stdout");
        assert!(!r.stderr().contains(password), "password in stderr");
    }
    assert!(
        !dump_store(ws).contains(password),
        "password in the database"
    );
    let export = ws.clerk(&["audit", "export"]).ok().stdout();
    assert!(!export.contains(password), "password in the audit export");
}

#[test]
fn smtp_auth_plain_with_password_from_the_secrets_file() {
    let password = "Pl41n-s3cret-pw";
    let server = SmtpServer::start(&[
        "--user",
        "clerk-bot",
        "--password",
        password,
        "--mechanisms",
        "PLAIN",
    ]);
    let ws = Workspace::new(Backend::Sqlite);
    ws.write(
        "clerk.yaml",
        &smtp_config(
            server.port,
            "    username: clerk-bot\n    password_secret: smtp_password\n",
        ),
    );
    let secrets = ws.write(
        ".clerk/secrets.yaml",
        &format!("smtp_password: {password}\n"),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    write_attachments(&ws);
    ws.write("simple.yaml", SIMPLE_PLAYBOOK);

    let r = ws.clerk(&["run", "simple.yaml"]).ok();
    let msgs = server.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].meta["authenticated"], true);
    assert_eq!(msgs[0].meta["mechanism"], "PLAIN");
    assert_eq!(msgs[0].meta["login"], "clerk-bot");
    check_no_password(&ws, password, &[&r]);
}

#[test]
fn smtp_auth_login_with_password_from_the_environment() {
    let password = "L0gin-s3cret-pw";
    let server = SmtpServer::start(&[
        "--user",
        "clerk-bot",
        "--password",
        password,
        "--mechanisms",
        "LOGIN",
    ]);
    let ws = Workspace::new(Backend::Sqlite);
    // All of the SMTP settings from CLERK_MAIL_* this time.
    let port = server.port.to_string();
    write_attachments(&ws);
    ws.write("simple.yaml", SIMPLE_PLAYBOOK);
    let r = ws
        .clerk_env(
            &["run", "simple.yaml"],
            &[
                ("CLERK_MAIL_TRANSPORT", "smtp"),
                ("CLERK_MAIL_FROM", "clerk@city.example"),
                ("CLERK_MAIL_SMTP_HOST", "127.0.0.1"),
                ("CLERK_MAIL_SMTP_PORT", &port),
                ("CLERK_MAIL_SMTP_USERNAME", "clerk-bot"),
                ("CLERK_MAIL_SMTP_PASSWORD_SECRET", "smtp_password"),
                ("CLERK_SECRET_SMTP_PASSWORD", password),
            ],
        )
        .ok();
    let msgs = server.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].meta["mechanism"], "LOGIN");
    assert_eq!(msgs[0].meta["login"], "clerk-bot");
    check_no_password(&ws, password, &[&r]);
}

#[test]
fn smtp_wrong_password_fails_at_once_without_leaking_it() {
    let server = SmtpServer::start(&["--user", "clerk-bot", "--password", "the-right-one"]);
    let ws = Workspace::new(Backend::Sqlite);
    ws.write(
        "clerk.yaml",
        &smtp_config(
            server.port,
            "    username: clerk-bot\n    password_secret: smtp_password\n",
        ),
    );
    write_attachments(&ws);
    ws.write("simple.yaml", SIMPLE_PLAYBOOK);
    let wrong = "Wr0ng-passw0rd";
    let r = ws.clerk_env(
        &["run", "simple.yaml"],
        &[("CLERK_SECRET_SMTP_PASSWORD", wrong)],
    );
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    assert!(r.stdout().contains("535"), "{}", r.stdout());
    assert!(server.messages().is_empty());
    // 535 is permanent: one attempt, not three.
    assert_eq!(mail_events(&ws).len(), 1);
    check_no_password(&ws, wrong, &[&r]);

    // And a password secret that is not set at all is named, not guessed.
    let r = ws.clerk(&["run", "simple.yaml"]);
    assert_eq!(r.code(), 1);
    assert!(
        r.stdout().contains("secret `smtp_password` is not set")
            && r.stdout().contains("CLERK_SECRET_SMTP_PASSWORD"),
        "{}",
        r.stdout()
    );
}

/// A self-signed certificate for localhost/127.0.0.1, written as PEM files.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("generate a certificate");
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key_pair.serialize_pem()).unwrap();
    (c, k)
}

#[test]
fn starttls_with_a_self_signed_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path());
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let password = "TLS-s3cret-pw";
    let server = SmtpServer::start(&[
        "--cert",
        cert,
        "--key",
        key,
        "--tls",
        "starttls",
        "--user",
        "clerk-bot",
        "--password",
        password,
    ]);
    let ws = Workspace::new(Backend::Sqlite);
    write_attachments(&ws);
    ws.write("simple.yaml", SIMPLE_PLAYBOOK);

    // Without accept_invalid_certs the certificate is refused, once, with a hint.
    ws.write(
        "clerk.yaml",
        &smtp_config(
            server.port,
            "    tls: starttls\n    username: clerk-bot\n    password_secret: smtp_password\n",
        ),
    );
    let env = [("CLERK_SECRET_SMTP_PASSWORD", password)];
    let r = ws.clerk_env(&["run", "simple.yaml"], &env);
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    assert!(
        r.stdout().contains("TLS with the SMTP server")
            && r.stdout().contains("accept_invalid_certs"),
        "{}",
        r.stdout()
    );
    assert_eq!(
        mail_events(&ws).len(),
        1,
        "a certificate problem is not retried"
    );
    assert!(server.messages().is_empty());

    // With it (test servers only), the message goes over TLS and a warning says so.
    ws.write(
        "clerk.yaml",
        &smtp_config(
            server.port,
            "    tls: starttls\n    accept_invalid_certs: true\n    username: clerk-bot\n    password_secret: smtp_password\n",
        ),
    );
    let r = ws.clerk_env(&["run", "simple.yaml"], &env).ok();
    assert!(
        r.stderr().contains("accept_invalid_certs"),
        "{}",
        r.stderr()
    );
    let msgs = server.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].meta["tls"], true);
    assert_eq!(msgs[0].meta["login"], "clerk-bot");
    let events = mail_events(&ws);
    let last = events.last().unwrap();
    assert_eq!(last["detail"]["tls"], "starttls");
    assert_eq!(last["detail"]["accept_invalid_certs"], true);
    check_no_password(&ws, password, &[&r]);
}

#[test]
fn implicit_tls_with_a_self_signed_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path());
    let server = SmtpServer::start(&[
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--tls",
        "implicit",
    ]);
    let ws = Workspace::new(Backend::Sqlite);
    ws.write(
        "clerk.yaml",
        &smtp_config(
            server.port,
            "    tls: tls\n    accept_invalid_certs: true\n",
        ),
    );
    write_attachments(&ws);
    ws.write("simple.yaml", SIMPLE_PLAYBOOK);
    ws.clerk(&["run", "simple.yaml"]).ok();
    let msgs = server.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].meta["tls"], true);
    assert_eq!(one_header(&msgs[0].parsed, "subject"), "Daily report");
}

#[test]
fn server_down_is_retried_then_fails_clearly() {
    // A port nobody listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ws = Workspace::new(Backend::Sqlite);
    ws.write("clerk.yaml", &smtp_config(port, ""));
    write_attachments(&ws);
    ws.write("simple.yaml", SIMPLE_PLAYBOOK);
    // mail.send's default retry policy: 3 attempts, 2 s then 4 s apart.
    let r = ws.clerk(&["run", "simple.yaml"]);
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    let out = r.stdout();
    assert!(
        out.contains(&format!("cannot reach the SMTP server 127.0.0.1:{port}")),
        "{out}"
    );
    assert!(out.contains("mail.send"), "{out}");
    assert!(!out.contains("Error {"), "no debug dump: {out}");
    let events = mail_events(&ws);
    assert_eq!(events.len(), 3, "one audited action per attempt");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["outcome"], "failed");
        assert_eq!(e["detail"]["attempt"], i + 1);
        assert_eq!(e["detail"]["subject"], "Daily report");
        assert!(
            e["error"].as_str().unwrap().contains("cannot reach"),
            "{e:#}"
        );
    }
    let stderr = r.stderr();
    assert!(stderr.contains("attempt 1 of 3 failed"), "{stderr}");
    assert!(stderr.contains("attempt 2 of 3 failed"), "{stderr}");
}

#[test]
fn rejected_recipient_fails_at_once_quoting_the_server() {
    let server = SmtpServer::start(&["--reject", "nobody@city.example"]);
    let ws = Workspace::new(Backend::Sqlite);
    ws.write("clerk.yaml", &smtp_config(server.port, ""));
    write_attachments(&ws);
    ws.write(
        "p.yaml",
        r#"name: p
steps:
  - mail.send:
      to: [permits@city.example, nobody@city.example]
      subject: "Report"
      text: "x"
"#,
    );
    let r = ws.clerk(&["run", "p.yaml"]);
    assert_eq!(r.code(), 1);
    let out = r.stdout();
    assert!(
        out.contains(&format!(
            "the SMTP server 127.0.0.1:{} refused the message: 550 5.1.1 <nobody@city.example>: Recipient address rejected: User unknown",
            server.port
        )),
        "{out}"
    );
    assert!(out.contains("not retried"), "{out}");
    assert_eq!(mail_events(&ws).len(), 1, "a 5xx is not retried");
    assert!(server.messages().is_empty(), "nothing was accepted");
}

#[test]
fn temporary_refusal_is_retried_per_the_step_policy() {
    let server = SmtpServer::start(&["--tempfail", "busy@city.example"]);
    let ws = Workspace::new(Backend::Sqlite);
    ws.write("clerk.yaml", &smtp_config(server.port, ""));
    ws.write(
        "p.yaml",
        r#"name: p
steps:
  - mail.send:
      to: busy@city.example
      subject: "Report"
      text: "x"
    retry: { attempts: 2, delay: 100ms }
"#,
    );
    let r = ws.clerk(&["run", "p.yaml"]);
    assert_eq!(r.code(), 1);
    assert!(
        r.stdout()
            .contains("temporarily refused the message: 451 4.3.0"),
        "{}",
        r.stdout()
    );
    let events = mail_events(&ws);
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["detail"]["attempt"], 2);
}

// ---------------------------------------------------------------- checks before sending

#[test]
fn bad_address_or_missing_attachment_fails_before_anything_is_sent() {
    let server = SmtpServer::start(&[]);
    let ws = Workspace::new(Backend::Sqlite);
    ws.write("clerk.yaml", &smtp_config(server.port, ""));
    write_attachments(&ws);
    ws.write(
        "p.yaml",
        r#"name: p
inputs:
  to: { type: string }
  file: { type: string }
steps:
  - name: Notify
    mail.send:
      to: "{{ inputs.to }}"
      subject: "Report"
      text: "x"
      attachments: ["{{ inputs.file }}"]
"#,
    );
    let run = |to: &str, file: &str| {
        ws.clerk(&[
            "run",
            "p.yaml",
            "--input",
            &format!("to={to}"),
            "--input",
            &format!("file={file}"),
        ])
    };
    let r = run(
        "permits@city.example, Jan Peeters <jan@@city>",
        "out/rejected.csv",
    );
    assert_eq!(r.code(), 1);
    assert!(
        r.stdout()
            .contains("`to`: `Jan Peeters <jan@@city>` is not a valid mail address"),
        "{}",
        r.stdout()
    );
    assert!(r.stdout().contains("\"Notify\""), "{}", r.stdout());

    let r = run("permits@city.example", "out/missing.xlsx");
    assert_eq!(r.code(), 1);
    assert!(
        r.stdout()
            .contains("attachment out/missing.xlsx does not exist; nothing was sent"),
        "{}",
        r.stdout()
    );
    // Neither was retried, and nothing reached the server.
    assert_eq!(mail_events(&ws).len(), 2);
    assert!(server.messages().is_empty());
}

#[test]
fn validate_checks_mail_arguments_with_positions() {
    let ws = Workspace::new(Backend::Sqlite);
    ws.write(
        "p.yaml",
        r#"name: p
steps:
  - mail.send:
      to: a@city.example
      subjet: "typo"
      text: "x"
"#,
    );
    let r = ws.clerk(&["validate", "p.yaml"]);
    assert_eq!(r.code(), 2);
    assert!(
        r.stdout()
            .contains("p.yaml:5:15: `mail.send`: unknown field `subjet`"),
        "{}",
        r.stdout()
    );
}

// ---------------------------------------------------------------- file outbox

#[test]
fn file_outbox_is_the_default_and_writes_a_parseable_eml() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let ws = Workspace::new(backend);
        let blob = write_attachments(&ws);
        ws.write("report.yaml", REPORT_PLAYBOOK);
        let out = ws.clerk(&["run", "report.yaml", "--json"]).ok().json();
        let sent = &out["vars"]["sent"];
        assert_eq!(sent["transport"], "file");
        let file = sent["file"].as_str().unwrap();
        assert!(
            file.starts_with(".clerk/outbox/") && file.ends_with(".eml"),
            "{file}"
        );
        let outbox: Vec<_> = std::fs::read_dir(ws.path().join(".clerk/outbox"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(outbox.len(), 1, "one file, no temp leftovers: {outbox:?}");

        let msg = parse_eml(&ws.path().join(file));
        assert_eq!(msg["defects"], serde_json::json!([]));
        assert_eq!(one_header(&msg, "subject"), SUBJECT);
        assert_eq!(one_header(&msg, "from"), "clerk@localhost");
        assert_eq!(one_header(&msg, "cc"), "audit@city.example");
        assert_eq!(
            one_header(&msg, "message-id"),
            sent["message_id"].as_str().unwrap()
        );
        let parts = leaves(&msg["body"]);
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[2]["filename"], "renewals.xlsx");
        assert_eq!(parts[2]["sha256"], sha256(&blob));
        assert_eq!(parts[3]["sha256"], sha256(CSV.as_bytes()));

        let e = &mail_events(&ws)[0];
        assert_eq!(e["detail"]["transport"], "file");
        assert_eq!(e["detail"]["file"], file);
        assert_eq!(e["detail"]["attachments"][0]["sha256"], sha256(&blob));
    }
}

#[test]
fn attachments_can_be_a_template_giving_a_list() {
    let ws = Workspace::new(Backend::Sqlite);
    write_attachments(&ws);
    ws.write("out/extra.txt", "extra\n");
    ws.write(
        "p.yaml",
        r#"name: p
steps:
  - file.list: "out/*"
    save_as: files
  - mail.send:
      to: a@city.example
      subject: "Everything in out/"
      text: "attached"
      attachments: "{{ files }}"
    save_as: all
  - name: Failure notice with the run's artifacts (none in this run)
    mail.send:
      to: a@city.example
      subject: "Artifacts"
      text: "attached"
      attachments: "{{ run.artifacts }}"
    save_as: notice
"#,
    );
    let out = ws.clerk(&["run", "p.yaml", "--json"]).ok().json();
    let all = parse_eml(&ws.path().join(out["vars"]["all"]["file"].as_str().unwrap()));
    let names: Vec<&str> = leaves(&all["body"])
        .iter()
        .filter_map(|p| p["filename"].as_str())
        .collect();
    assert_eq!(names, ["extra.txt", "rejected.csv", "renewals.xlsx"]);
    let notice = parse_eml(
        &ws.path()
            .join(out["vars"]["notice"]["file"].as_str().unwrap()),
    );
    assert_eq!(notice["body"]["content_type"], "text/plain");
}

#[test]
fn numbers_become_text_and_wrong_shapes_are_named() {
    let ws = Workspace::new(Backend::Sqlite);
    ws.write(
        "p.yaml",
        r#"name: p
steps:
  - set: { rows: [1, 2, 3] }
  - mail.send:
      to: a@city.example
      subject: "{{ rows | length }}"
      text: "{{ rows | length }}"
      headers: { X-Count: 7 }
    save_as: sent
  - name: Recipients that are not addresses
    mail.send:
      to: "{{ rows }}"
      subject: x
      text: y
"#,
    );
    let r = ws.clerk(&["run", "p.yaml", "--json"]);
    assert_eq!(r.code(), 1);
    let out = r.json();
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid argument `to[0]` must be text, got 1"),
        "{out:#}"
    );
    let msg = parse_eml(
        &ws.path()
            .join(out["vars"]["sent"]["file"].as_str().unwrap()),
    );
    assert_eq!(one_header(&msg, "subject"), "3");
    assert_eq!(one_header(&msg, "x-count"), "7");

    ws.write(
        "v.yaml",
        "name: v\nsteps:\n  - mail.send:\n      to: { a: 1 }\n      subject: [x]\n      text: y\n",
    );
    let r = ws.clerk(&["validate", "v.yaml"]);
    assert_eq!(r.code(), 2);
    assert!(
        r.stdout().contains(
            "v.yaml:4:11: `mail.send`: `to` must be an address, addresses separated by commas, or a list of addresses, got a map"
        ),
        "{}",
        r.stdout()
    );
    assert!(r.stdout().contains("v.yaml:5:16:"), "{}", r.stdout());
}

// ---------------------------------------------------------------- resend protection

/// Runs `playbook` as run `id` of bot `nightly` through the engine, the way the
/// scheduler's worker does; the run row must exist and be `running`.
async fn execute(ws: &Workspace, store: &clerk::store::Store, id: &str, playbook: &str) -> String {
    let config = clerk::config::Config::load(ws.path()).unwrap();
    let engine = clerk::engine::Engine {
        config: Arc::new(config),
        recorder: clerk::audit::Recorder::new(store.clone(), Arc::new(clerk::secrets::redact)),
        secrets: Arc::new(clerk::secrets::Secrets::load(ws.path()).unwrap()),
    };
    let pb = clerk::playbook::load_file(&ws.path().join(playbook), &clerk::actions::Registry)
        .unwrap_or_else(|d| panic!("{d}"));
    let outcome = engine
        .execute(
            id,
            clerk::engine::RunRequest {
                playbook: Arc::new(pb),
                inputs: Default::default(),
                actor: "nightly".into(),
                bot: Some("nightly".into()),
                workspace: ws.path().to_path_buf(),
                cancel: Default::default(),
                max_runtime: None,
                progress: false,
            },
        )
        .await
        .unwrap();
    outcome.status.as_str().to_string()
}

async fn store_of(ws: &Workspace) -> clerk::store::Store {
    let url = ws
        .db_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/.clerk/clerk.db", ws.path().display()));
    clerk::store::Store::open(&url).await.unwrap()
}

const MAIL_THEN_FAIL: &str = r#"name: mail-then-fail
steps:
  - name: Mail the report
    mail.send:
      to: permits@city.example
      subject: "Nightly report"
      text: "generated at {{ now() }}"
    save_as: sent
  - name: Something fails after the mail went out
    assert: { that: "{{ false }}", message: "the portal is down" }
"#;

async fn resend_protection(backend: Backend) {
    let server = SmtpServer::start(&[]);
    let ws = Workspace::new(backend);
    ws.write("clerk.yaml", &smtp_config(server.port, ""));
    ws.write("p.yaml", MAIL_THEN_FAIL);
    let store = store_of(&ws).await;
    let id = ulid::Ulid::new().to_string();
    let new = clerk::store::NewRun {
        id: id.clone(),
        bot: Some("nightly".into()),
        playbook: "p.yaml".into(),
        inputs: serde_json::json!({}),
        scheduled_for: Some(chrono::Utc::now()),
        actor: "nightly".into(),
        attempt: 1,
        status: "running".into(),
        ..Default::default()
    };
    store
        .create_run(&new, clerk::audit::NewEvent::new("run.started", "nightly"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(execute(&ws, &store, &id, "p.yaml").await, "failed");
    assert_eq!(server.messages().len(), 1);

    // The firing is retried as a whole: a new run in the same lineage (as a
    // bot's `retry:` queues it), executed from the start.
    let lineage = store.get_run(&id).await.unwrap().unwrap().lineage;
    let retry = ulid::Ulid::new().to_string();
    let again = clerk::store::NewRun {
        id: retry.clone(),
        bot: Some("nightly".into()),
        playbook: "p.yaml".into(),
        inputs: serde_json::json!({}),
        scheduled_for: None,
        actor: "nightly".into(),
        attempt: 2,
        status: "running".into(),
        lineage: Some(lineage),
        ..Default::default()
    };
    store
        .create_run(
            &again,
            clerk::audit::NewEvent::new("run.started", "nightly")
                .detail(serde_json::json!({"attempt": 2, "retry_of": id})),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(execute(&ws, &store, &retry, "p.yaml").await, "failed");
    assert_eq!(server.messages().len(), 1, "the retried run did not resend");

    let events = mail_events(&ws);
    assert_eq!(events.len(), 2);
    let (first, second) = (&events[0]["detail"], &events[1]["detail"]);
    assert_eq!(first["already_sent"], false);
    assert_eq!(second["already_sent"], true);
    assert_eq!(second["message_id"], first["message_id"]);
    assert_eq!(second["first_sent_by_run"], id);
    assert_eq!(
        one_header(&server.messages()[0].parsed, "message-id"),
        first["message_id"].as_str().unwrap()
    );

    // A new manual run is a new mail.
    let r = ws.clerk(&["run", "p.yaml"]);
    assert_eq!(r.code(), 1);
    assert_eq!(server.messages().len(), 2);
    ws.clerk(&["audit", "verify"]).ok();
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_retried_as_a_whole_does_not_resend_sqlite() {
    resend_protection(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_retried_as_a_whole_does_not_resend_postgres() {
    resend_protection(Backend::Postgres).await;
}

#[test]
fn a_retried_block_does_not_resend_within_a_run() {
    // The block fails after the mail on its first attempt (a timeout, which
    // is retryable), and succeeds on the second: one mail in the outbox.
    let ws = Workspace::new(Backend::Sqlite);
    ws.write(
        "p.yaml",
        r#"name: p
steps:
  - name: Mail and confirm
    retry: { attempts: 2, delay: 10ms }
    timeout: 5s
    steps:
      - mail.send:
          to: permits@city.example
          subject: "Report"
          text: "x"
        save_as: sent
      - file.exists: out/first-attempt-done
        save_as: second
      - file.write: { path: out/first-attempt-done, text: "" }
      - wait: 60s
        if: "{{ not second }}"
"#,
    );
    let out = ws.clerk(&["run", "p.yaml", "--json"]).ok().json();
    assert_eq!(out["vars"]["sent"]["already_sent"], true);
    let outbox = std::fs::read_dir(ws.path().join(".clerk/outbox"))
        .unwrap()
        .count();
    assert_eq!(outbox, 1);
}

// ---------------------------------------------------------------- the example playbook

#[test]
fn example_playbook_mails_a_report_to_the_outbox() {
    let ws = Workspace::new(Backend::Sqlite);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/mail-report.yaml");
    std::fs::create_dir_all(ws.path().join("playbooks")).unwrap();
    std::fs::copy(&src, ws.path().join("playbooks/mail-report.yaml")).unwrap();
    ws.clerk(&["validate", "playbooks/mail-report.yaml"]).ok();
    let out = ws
        .clerk(&["run", "playbooks/mail-report.yaml", "--json"])
        .ok()
        .json();
    let sent = &out["vars"]["sent"];
    assert_eq!(sent["transport"], "file");
    let msg = parse_eml(&ws.path().join(sent["file"].as_str().unwrap()));
    let names: Vec<&str> = leaves(&msg["body"])
        .iter()
        .filter_map(|p| p["filename"].as_str())
        .collect();
    assert_eq!(names.len(), 1, "{msg:#}");
    assert!(names[0].ends_with(".csv"), "{names:?}");
}
