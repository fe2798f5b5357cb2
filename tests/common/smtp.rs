//! A real SMTP server for tests: Python's aiosmtpd (`tests/support/smtp_server.py`)
//! on a free loopback port, killed when dropped, and what it received parsed
//! by Python's standard `email` package (`tests/support/eml.py`), as a mail
//! reader would.
//!
//! The interpreter is /usr/bin/python3 (Debian's, with `python3-aiosmtpd`);
//! set CLERK_TEST_PYTHON to use another.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub fn python() -> String {
    std::env::var("CLERK_TEST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}

pub fn support(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(file)
}

/// A running aiosmtpd server; killed when dropped.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

/// One message the server accepted.
pub struct Received {
    /// Envelope sender and recipients, the AUTH mechanism and login, TLS.
    pub meta: Value,
    /// The DATA bytes exactly as received.
    pub raw: Vec<u8>,
    /// The message as `eml.py` reads it: headers, MIME tree, attachment hashes.
    pub parsed: Value,
}

impl SmtpServer {
    /// Starts the server with `args` (see smtp_server.py) and reads its port.
    pub fn start(args: &[&str]) -> SmtpServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(python())
            .arg(support("smtp_server.py"))
            .arg("--dir")
            .arg(dir.path())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} (install python3-aiosmtpd, or set CLERK_TEST_PYTHON): {e}",
                    python()
                )
            });
        let stdout = child.stdout.take().expect("server stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the server's port");
        let port = match line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
        {
            Some(p) => p,
            None => {
                let _ = child.kill();
                panic!("the SMTP test server did not start (is aiosmtpd installed?): {line:?}")
            }
        };
        SmtpServer { child, port, dir }
    }

    /// Every message received so far, in order. The server writes each one
    /// before it answers 250, so a message clerk saw accepted is here.
    pub fn messages(&self) -> Vec<Received> {
        let mut out = Vec::new();
        for n in 1.. {
            let meta = self.dir.path().join(format!("{n}.json"));
            if !meta.exists() {
                break;
            }
            let meta: Value = serde_json::from_str(
                &std::fs::read_to_string(&meta).expect("read the message's metadata"),
            )
            .expect("metadata is JSON");
            let eml = self.dir.path().join(format!("{n}.eml"));
            out.push(Received {
                meta,
                raw: std::fs::read(&eml).expect("read the received message"),
                parsed: parse_eml(&eml),
            });
        }
        out
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A message file as Python's `email` package reads it.
pub fn parse_eml(path: &Path) -> Value {
    let out = Command::new(python())
        .arg(support("eml.py"))
        .arg(path)
        .output()
        .expect("run eml.py");
    assert!(
        out.status.success(),
        "eml.py failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("eml.py prints JSON")
}

/// Every value of header `name` (lower case) in a parsed message.
pub fn header<'a>(msg: &'a Value, name: &str) -> Vec<&'a str> {
    msg["headers"][name]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The one value of header `name`; fails the test if it is missing or repeated.
pub fn one_header<'a>(msg: &'a Value, name: &str) -> &'a str {
    let h = header(msg, name);
    assert_eq!(h.len(), 1, "header {name} in {msg:#}");
    h[0]
}

/// The leaf parts of a parsed message, depth first.
pub fn leaves(part: &Value) -> Vec<&Value> {
    match part["parts"].as_array() {
        Some(parts) => parts.iter().flat_map(leaves).collect(),
        None => vec![part],
    }
}
