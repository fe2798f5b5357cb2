//! The real `fixtures/legacy-portal` app for tests: started on a free
//! loopback port with the flags a test needs, killed when dropped, and its
//! fixture API (`/_fixture/cases.json`) read over plain HTTP.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// A running legacy-portal, killed when dropped.
pub struct Portal {
    child: Child,
    pub url: String,
}

/// The portal binary beside clerk's; built first when a bare `cargo test`
/// has not built it (`scripts/test` builds the whole workspace).
fn portal_binary() -> PathBuf {
    let clerk = Path::new(env!("CARGO_BIN_EXE_clerk"));
    let bin = clerk.with_file_name("legacy-portal");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "legacy-portal"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo must be runnable to build the portal");
        assert!(status.success(), "cargo build -p legacy-portal failed");
    }
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}

impl Portal {
    /// Starts the portal with `--port 0` and `flags`; waits for its URL.
    pub fn start(flags: &[&str]) -> Portal {
        let mut child = Command::new(portal_binary())
            .args(["--port", "0"])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start legacy-portal");
        let stdout = child.stdout.take().expect("portal stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("portal startup line");
        let url = match line.trim().strip_prefix("legacy-portal listening on ") {
            Some(u) => u.to_string(),
            None => {
                let _ = child.kill();
                panic!("unexpected portal startup line: {line:?}")
            }
        };
        Portal { child, url }
    }

    /// A plain HTTP request to the fixture API (no browser involved).
    pub fn http(&self, method: &str, path: &str) -> String {
        let addr = self.url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).expect("connect to portal");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )
        .expect("send the request to the portal");
        let mut out = String::new();
        s.read_to_string(&mut out)
            .expect("read the portal's answer");
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    }

    /// Every case the portal holds, as `GET /_fixture/cases.json` gives them.
    pub fn cases(&self) -> Vec<Value> {
        let body = self.http("GET", "/_fixture/cases.json");
        serde_json::from_str::<Value>(&body)
            .unwrap_or_else(|e| panic!("cases.json is not JSON ({e}): {body}"))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
