//! `mail.fetch`, `mail.move`, `mail.flag`, `mail.delete` against a real
//! dovecot (tests/common/imap.rs): decoding, attachments, hostile names,
//! failures (wrong password, server down, self-signed TLS), size limit.

mod common;

use std::collections::BTreeSet;

use common::imap::{Imap, PASSWORD};
use common::{Backend, Workspace, dump_store};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn b64(bytes: &[u8]) -> String {
    // RFC 2045 base64 with 76-column lines, by hand: no test-only crate.
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out.as_bytes()
        .chunks(76)
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn workspace(imap: &Imap) -> Workspace {
    let ws = Workspace::new(Backend::Sqlite);
    ws.write("clerk.yaml", &imap.clerk_yaml());
    ws
}

fn run_json(ws: &Workspace, playbook: &str, env: &[(&str, &str)]) -> (i32, Value, String) {
    let mut all = vec![("CLERK_SECRET_IMAP_PASSWORD", PASSWORD)];
    all.extend_from_slice(env);
    let r = ws.clerk_env(&["run", playbook, "--json"], &all);
    let text = format!("{}\n{}", r.stdout(), r.stderr());
    let v = serde_json::from_slice(&r.0.stdout).unwrap_or(Value::Null);
    (r.code(), v, text)
}

/// The audit events of the last run, as JSON lines.
fn events(ws: &Workspace, run: &str) -> Vec<Value> {
    let r = ws
        .clerk(&["audit", "export", "--run", run, "--format", "jsonl"])
        .ok();
    r.stdout()
        .lines()
        .map(|l| serde_json::from_str(l).expect("jsonl"))
        .collect()
}

fn plain(subject_header: &str, ctype: &str, body: &[u8], id: &str) -> Vec<u8> {
    let mut m = format!(
        "From: =?UTF-8?Q?Jos=C3=A9_Pe=C3=B1a?= <jose@city.example>\r\nTo: permits@city.example\r\nSubject: {subject_header}\r\nMessage-ID: <{id}@test>\r\nDate: Mon, 3 Feb 2025 10:00:00 +0100\r\nMIME-Version: 1.0\r\nContent-Type: {ctype}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    )
    .into_bytes();
    m.extend_from_slice(body);
    m.extend_from_slice(b"\r\n");
    m
}

/// A multipart message with the given (header-ready filename, bytes) attachments.
fn with_attachments(subject: &str, id: &str, parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut m = format!(
        "From: Citizen <citizen@example.org>\r\nTo: permits@city.example\r\nSubject: {subject}\r\nMessage-ID: <{id}@test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BOUNDARY\"\r\n\r\n--BOUNDARY\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n"
    );
    for (name_param, bytes) in parts {
        m.push_str(&format!(
            "--BOUNDARY\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; {name_param}\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            b64(bytes)
        ));
    }
    m.push_str("--BOUNDARY--\r\n");
    m.into_bytes()
}

#[test]
fn fetch_decodes_charsets_and_encoded_subjects() {
    let imap = Imap::start();
    imap.append(
        "INBOX",
        &plain(
            "=?UTF-8?B?UsOpZi4gZG9zc2llciDigJQgQnJ1c3NlbC9CcnV4ZWxsZXM=?=",
            "text/plain; charset=utf-8",
            "Café, ünïcode and € in UTF-8".as_bytes(),
            "utf8",
        ),
    );
    imap.append(
        "INBOX",
        &plain(
            "=?ISO-8859-1?Q?R=E9sum=E9_fran=E7ais?=",
            "text/plain; charset=ISO-8859-1",
            b"Gar\xe7on tr\xe8s \xe9l\xe8ve",
            "latin1",
        ),
    );
    imap.append(
        "INBOX",
        &plain(
            "plain html",
            "text/html; charset=windows-1252",
            b"<p>\x80 5 \x96 caf\xe9</p>",
            "html",
        ),
    );
    let ws = workspace(&imap);
    ws.write(
        "fetch.yaml",
        "name: fetch\nsteps:\n  - mail.fetch: { mailbox: INBOX }\n    save_as: msgs\n",
    );
    let (code, v, text) = run_json(&ws, "fetch.yaml", &[]);
    assert_eq!(code, 0, "{text}");
    let msgs = v["vars"]["msgs"].as_array().expect("a list").clone();
    assert_eq!(msgs.len(), 3, "{msgs:#?}");
    assert_eq!(msgs[0]["subject"], "Réf. dossier — Brussel/Bruxelles");
    assert_eq!(
        msgs[0]["text"].as_str().unwrap().trim(),
        "Café, ünïcode and € in UTF-8"
    );
    assert_eq!(msgs[0]["from"], "José Peña <jose@city.example>");
    assert_eq!(msgs[0]["from_address"], "jose@city.example");
    assert_eq!(msgs[0]["message_id"], "<utf8@test>");
    assert_eq!(msgs[1]["subject"], "Résumé français");
    assert_eq!(
        msgs[1]["text"].as_str().unwrap().trim(),
        "Garçon très élève"
    );
    assert!(
        msgs[2]["html"].as_str().unwrap().contains("€ 5 – café"),
        "{:#}",
        msgs[2]
    );
    let uids: Vec<u64> = msgs.iter().map(|m| m["uid"].as_u64().unwrap()).collect();
    assert_eq!(uids, vec![1, 2, 3]);
    assert!(msgs[0]["uidvalidity"].as_u64().unwrap() > 0);

    // Filters: subject (decoded, case-insensitive) and sender.
    ws.write(
        "filter.yaml",
        "name: filter\nsteps:\n  - mail.fetch: { subject: RÉSUMÉ, from: jose }\n    save_as: msgs\n  - mail.fetch: { from: nobody@nowhere, limit: 1 }\n    save_as: nobody\n",
    );
    let (code, v, text) = run_json(&ws, "filter.yaml", &[]);
    assert_eq!(code, 0, "{text}");
    let got: Vec<&str> = v["vars"]["msgs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["subject"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec!["Résumé français"]);
    assert_eq!(v["vars"]["nobody"], Value::Array(vec![]));

    // The audit names what was read.
    let run = v["id"].as_str().unwrap();
    let evs = events(&ws, run);
    let fetch = evs
        .iter()
        .find(|e| e["action"] == "mail.fetch" && e["kind"] == "action")
        .expect("a mail.fetch event");
    let detail = &fetch["detail"];
    assert_eq!(detail["server"], format!("127.0.0.1:{}", imap.port));
    assert_eq!(detail["mailbox"], "INBOX");
    assert_eq!(detail["messages"][0]["message_id"], "<latin1@test>");
    assert_eq!(detail["messages"][0]["subject"], "Résumé français");
    assert_eq!(
        detail["messages"][0]["from"],
        "José Peña <jose@city.example>"
    );
    assert_eq!(detail["messages"][0]["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn attachments_are_byte_identical_and_hostile_names_are_harmless() {
    let imap = Imap::start();
    let xlsx = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/sheets/permit-requests.xlsx"),
    )
    .unwrap();
    let binary: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 256) as u8).collect();
    let long = format!("{}.pdf", "x".repeat(300));
    let long_param = format!("filename=\"{long}\"");
    let parts: Vec<(&str, &[u8])> = vec![
        ("filename=\"requests.xlsx\"", &xlsx),
        (
            "filename=\"../../etc/passwd\"",
            b"root:x:0:0::/root:/bin/sh\n",
        ),
        ("filename=\"CON\"", b"device"),
        (&long_param, &binary),
        ("filename*=utf-8''a%07b%0D%0Ac%2F..%5Cd.txt", b"control"),
        ("filename=\"requests.xlsx\"", b"second with the same name"),
    ];
    imap.append("INBOX", &with_attachments("Requests", "att", &parts));
    let ws = workspace(&imap);
    ws.write(
        "att.yaml",
        "name: att\nsteps:\n  - mail.fetch: { save_attachments: in/mail }\n    save_as: msgs\n",
    );
    let (code, v, text) = run_json(&ws, "att.yaml", &[]);
    assert_eq!(code, 0, "{text}");
    let atts = v["vars"]["msgs"][0]["attachments"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(atts.len(), 6, "{atts:#?}");
    let dir = ws.path().join("in/mail");
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(on_disk.len(), 6, "{on_disk:?}");
    let expected: Vec<&[u8]> = parts.iter().map(|(_, b)| *b).collect();
    for (a, bytes) in atts.iter().zip(&expected) {
        let name = a["name"].as_str().unwrap();
        assert!(
            !name.contains('/')
                && !name.contains('\\')
                && !name.contains("..")
                && !name.chars().any(char::is_control),
            "unsafe name {name:?}"
        );
        assert!(name.len() <= 120, "long name kept: {name}");
        assert!(on_disk.contains(name), "{name} not in {on_disk:?}");
        let path = a["path"].as_str().unwrap();
        assert_eq!(path, format!("in/mail/{name}"));
        let saved = std::fs::read(ws.path().join(path)).unwrap();
        assert_eq!(sha(&saved), sha(bytes), "{name}");
        assert_eq!(a["sha256"], sha(bytes));
        assert_eq!(a["size"], bytes.len());
    }
    assert_eq!(atts[0]["name"], "requests.xlsx");
    assert_eq!(atts[5]["name"], "requests (2).xlsx");
    assert_eq!(atts[1]["original_name"], "../../etc/passwd");
    assert_ne!(atts[2]["name"], "CON");
    assert!(atts[3]["name"].as_str().unwrap().ends_with(".pdf"));
    // Nothing escaped the folder.
    assert!(!ws.path().join("etc").exists() && !ws.path().join("in/etc").exists());
    // No temporary files left behind.
    assert!(
        on_disk.iter().all(|n| !n.starts_with(".tmp")),
        "{on_disk:?}"
    );

    // The audit has every attachment's name, size and SHA-256.
    let evs = events(&ws, v["id"].as_str().unwrap());
    let fetch = evs.iter().find(|e| e["action"] == "mail.fetch").unwrap();
    let audited = fetch["detail"]["messages"][0]["attachments"]
        .as_array()
        .unwrap();
    assert_eq!(audited.len(), 6);
    assert_eq!(audited[0]["sha256"], sha(&xlsx));
    assert_eq!(audited[1]["original_name"], "../../etc/passwd");
}

#[test]
fn move_flag_and_delete() {
    let imap = Imap::start();
    for i in 1..=3 {
        imap.append(
            "INBOX",
            &plain(
                &format!("m{i}"),
                "text/plain; charset=utf-8",
                b"x",
                &format!("m{i}"),
            ),
        );
    }
    let ws = workspace(&imap);
    ws.write(
        "manage.yaml",
        "name: manage\nsteps:\n  - mail.fetch: { mailbox: INBOX }\n    save_as: msgs\n  - mail.flag: { uid: \"{{ msgs[0].uid }}\", seen: true, flagged: true }\n  - mail.move: { uids: \"{{ [msgs[1].uid] }}\", to: Processed, uidvalidity: \"{{ msgs[1].uidvalidity }}\" }\n    save_as: moved\n  - mail.move: { uid: \"{{ msgs[2].uid }}\", to: Archive/2025 }\n  - mail.fetch: { mailbox: Archive/2025, unseen: false }\n    save_as: archived\n  - mail.delete: { mailbox: Archive/2025, uid: \"{{ archived[0].uid }}\" }\n",
    );
    let (code, v, text) = run_json(&ws, "manage.yaml", &[]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(imap.uids("INBOX"), vec![1]);
    let flags = imap.flags("INBOX");
    assert!(
        flags[0].1.contains("\\Seen") && flags[0].1.contains("\\Flagged"),
        "{flags:?}"
    );
    assert_eq!(imap.message_ids("Processed"), vec!["<m2@test>"]);
    assert!(imap.uids("Archive/2025").is_empty(), "deleted");
    assert_eq!(v["vars"]["moved"]["moved"], serde_json::json!([2]));
    let evs = events(&ws, v["id"].as_str().unwrap());
    let mv = evs
        .iter()
        .find(|e| e["action"] == "mail.move")
        .expect("a mail.move event");
    assert_eq!(mv["detail"]["to"], "Processed");
    assert_eq!(mv["detail"]["messages"][0]["message_id"], "<m2@test>");
    assert_eq!(mv["detail"]["messages"][0]["subject"], "m2");
    assert!(evs.iter().any(|e| e["action"] == "mail.flag"));
    assert!(
        evs.iter().any(|e| e["action"] == "mail.delete"
            && e["detail"]["messages"][0]["message_id"] == "<m3@test>")
    );

    // A UID that is not there is a clear business failure.
    ws.write(
        "gone.yaml",
        "name: gone\nsteps:\n  - mail.move: { uid: 99, to: Processed }\n",
    );
    let (code, _, text) = run_json(&ws, "gone.yaml", &[]);
    assert_eq!(code, 1);
    assert!(text.contains("no message with UID 99 in INBOX"), "{text}");
}

#[test]
fn wrong_password_fails_once_and_never_shows_it() {
    let imap = Imap::start();
    imap.append("INBOX", &plain("x", "text/plain", b"x", "x"));
    let ws = workspace(&imap);
    ws.write("f.yaml", "name: f\nsteps:\n  - mail.fetch: {}\n");
    let wrong = "Wr0ng-Passw0rd-4417";
    let r = ws.clerk_env(
        &["run", "f.yaml", "--json"],
        &[("CLERK_SECRET_IMAP_PASSWORD", wrong)],
    );
    let text = format!("{}\n{}", r.stdout(), r.stderr());
    assert_eq!(r.code(), 1, "{text}");
    assert!(text.contains("refused the login of `clerk`"), "{text}");
    assert!(text.contains("AUTHENTICATIONFAILED"), "{text}");
    assert!(!text.contains(wrong), "{text}");
    let run = serde_json::from_slice::<Value>(&r.0.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let attempts = events(&ws, &run)
        .iter()
        .filter(|e| e["action"] == "mail.fetch" && e["kind"] == "action")
        .count();
    assert_eq!(attempts, 1, "a refused login is not retried");
    let store = dump_store(&ws);
    assert!(!store.contains(wrong), "the password is in the store");
    let shown = ws.clerk(&["runs", "show", &run]);
    assert!(!shown.stdout().contains(wrong));
    // A missing secret is named, not guessed.
    let r = ws.clerk(&["run", "f.yaml"]);
    assert_eq!(r.code(), 1);
    assert!(
        (r.stdout() + &r.stderr()).contains("CLERK_SECRET_IMAP_PASSWORD"),
        "{}",
        r.stderr()
    );
}

#[test]
fn server_down_is_retried_then_fails_clearly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ws = Workspace::new(Backend::Sqlite);
    ws.write(
        "clerk.yaml",
        &format!("imap:\n  port: {port}\n  username: clerk\n  password_secret: imap_password\n  timeout: 2s\n"),
    );
    ws.write(
        "f.yaml",
        "name: f\nsteps:\n  - mail.fetch: {}\n    retry: { attempts: 3, delay: 100ms }\n",
    );
    let (code, v, text) = run_json(&ws, "f.yaml", &[]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("cannot reach the IMAP server 127.0.0.1:{port}")),
        "{text}"
    );
    let attempts = events(&ws, v["id"].as_str().unwrap())
        .iter()
        .filter(|e| e["action"] == "mail.fetch" && e["kind"] == "action")
        .count();
    assert_eq!(attempts, 3);
}

#[test]
fn self_signed_tls_is_refused_unless_allowed() {
    let imap = Imap::start();
    imap.append("INBOX", &plain("over tls", "text/plain", b"x", "tls"));
    let ws = workspace(&imap);
    ws.write(
        "f.yaml",
        "name: f\nsteps:\n  - mail.fetch: {}\n    save_as: m\n",
    );
    let tls_port = imap.tls_port.to_string();
    let env = [
        ("CLERK_IMAP_TLS", "tls"),
        ("CLERK_IMAP_PORT", tls_port.as_str()),
    ];
    let (code, _, text) = run_json(&ws, "f.yaml", &env);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("TLS with the IMAP server"), "{text}");
    assert!(text.contains("imap.accept_invalid_certs: true"), "{text}");

    let mut env_ok = env.to_vec();
    env_ok.push(("CLERK_IMAP_ACCEPT_INVALID_CERTS", "true"));
    let (code, v, text) = run_json(&ws, "f.yaml", &env_ok);
    assert_eq!(code, 0, "{text}");
    assert_eq!(v["vars"]["m"][0]["subject"], "over tls");

    // STARTTLS on the plain port, same rule.
    let (code, _, text) = run_json(&ws, "f.yaml", &[("CLERK_IMAP_TLS", "starttls")]);
    assert_eq!(code, 1, "{text}");
    let (code, v, text) = run_json(
        &ws,
        "f.yaml",
        &[
            ("CLERK_IMAP_TLS", "starttls"),
            ("CLERK_IMAP_ACCEPT_INVALID_CERTS", "true"),
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert_eq!(v["vars"]["m"][0]["subject"], "over tls");
}

#[test]
fn a_message_over_the_size_limit_is_a_clear_error() {
    let imap = Imap::start();
    imap.append(
        "INBOX",
        &with_attachments(
            "big one",
            "big",
            &[("filename=\"big.bin\"", &vec![7u8; 20_000])],
        ),
    );
    let ws = workspace(&imap);
    ws.write("f.yaml", "name: f\nsteps:\n  - mail.fetch: {}\n");
    let (code, _, text) = run_json(&ws, "f.yaml", &[("CLERK_IMAP_MAX_MESSAGE_SIZE", "10000")]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("message UID 1 in INBOX ("), "{text}");
    assert!(text.contains("big one"), "{text}");
    assert!(
        text.contains("over the limit of 9.8 KB per message"),
        "{text}"
    );
    assert!(!ws.path().join("in").exists());
}

#[test]
fn a_message_finished_in_a_lineage_is_not_handed_out_again() {
    finished_once(Backend::Sqlite);
}

#[test]
fn a_message_finished_in_a_lineage_is_not_handed_out_again_postgres() {
    finished_once(Backend::Postgres);
}

fn finished_once(backend: Backend) {
    let imap = Imap::start();
    imap.append("INBOX", &plain("first", "text/plain", b"x", "first"));
    imap.append("INBOX", &plain("second", "text/plain", b"x", "second"));
    let ws = Workspace::new(backend);
    ws.write("clerk.yaml", &imap.clerk_yaml());
    ws.write(
        "once.yaml",
        "name: once\nsteps:\n  - mail.fetch: { unseen: false }\n    save_as: first\n  - mail.flag: { uid: \"{{ first[0].uid }}\", seen: true }\n  - mail.fetch: { unseen: false }\n    save_as: again\n  - mail.flag: { uid: \"{{ first[0].uid }}\", seen: true }\n    save_as: flagged_again\n",
    );
    let (code, v, text) = run_json(&ws, "once.yaml", &[]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(v["vars"]["first"].as_array().unwrap().len(), 2);
    let again = v["vars"]["again"].as_array().unwrap();
    assert_eq!(again.len(), 1, "{again:#?}");
    assert_eq!(again[0]["subject"], "second");
    assert_eq!(again[0]["redelivered"], true);
    let evs = events(&ws, v["id"].as_str().unwrap());
    let fetches: Vec<&Value> = evs
        .iter()
        .filter(|e| e["action"] == "mail.fetch" && e["kind"] == "action")
        .collect();
    assert_eq!(
        fetches[1]["detail"]["already_handled"],
        serde_json::json!([1])
    );
    assert_eq!(
        v["vars"]["flagged_again"]["changed"],
        serde_json::json!([1])
    );
    // A new run is a new lineage: it sees both again.
    let (code, v, text) = run_json(&ws, "once.yaml", &[]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(v["vars"]["first"].as_array().unwrap().len(), 2);
}
