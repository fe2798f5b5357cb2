//! A remote browser (`browser.webdriver_url`): a Selenium Grid 4 used as a
//! pool, or any other WebDriver server.
//!
//! - [`probe`] asks the server's `/status` whether it is a Grid and whether
//!   its nodes offer managed downloads, so that clerk only asks for what the
//!   Grid has (a request for `se:downloadsEnabled` no node offers would wait
//!   in the Grid's queue until it times out).
//! - [`Record`]: every remote session is written down under
//!   `.clerk/grid-sessions/` with its run and owner process; the next clerk
//!   start closes the sessions of owners that are gone ([`sweep`]), because a
//!   `kill -9` of clerk leaves the session and its Chromium holding a Grid
//!   slot until the node's own idle timeout.
//! - [`Remote::wait_download`]: the Grid's managed-downloads API
//!   (`/session/{id}/se/files`), so a file saved on a node on another machine
//!   still reaches the run's artifacts.
//! - [`command`]: raw WebDriver commands on the session's own connection
//!   (the DevTools bridge `goog/cdp/execute`, which a Grid forwards to the
//!   node's chromedriver, and the files endpoint).

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use fantoccini::Client;
use fantoccini::wd::WebDriverCompatibleCommand;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::super::BrowserError;

/// How long one exchange with the Grid may take (status, files, a close).
const EXCHANGE_LIMIT: Duration = Duration::from_secs(10);

/// Where session records live, under the workspace.
pub const RECORDS: &str = ".clerk/grid-sessions";

/// What the server at `webdriver_url` offers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerInfo {
    /// A Selenium Grid (its `/status` lists nodes).
    pub grid: bool,
    /// Some node slot offers managed downloads (`se:downloadsEnabled`).
    pub downloads: bool,
}

/// Reads what a server's `/status` says about it (pure, for tests).
pub fn server_info(status: &Value) -> ServerInfo {
    let Some(nodes) = status.get("nodes").and_then(Value::as_array) else {
        return ServerInfo::default();
    };
    let downloads = nodes.iter().any(|n| {
        n.get("slots")
            .and_then(Value::as_array)
            .is_some_and(|slots| {
                slots.iter().any(|s| {
                    s.pointer("/stereotype/se:downloadsEnabled")
                        .and_then(Value::as_bool)
                        == Some(true)
                })
            })
    });
    ServerInfo {
        grid: true,
        downloads,
    }
}

/// The URL with a trailing `/`, so that `http://host:4444/wd/hub` keeps its
/// path when WebDriver endpoints are joined to it.
pub fn base_url(url: &str) -> String {
    if url.ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    }
}

/// A client for commands that need no session of their own (`/status`, or
/// a recorded session of a dead clerk). Persisted, so that dropping it does
/// not send a `DELETE` for the placeholder session id.
async fn bare_client(url: &str, session: &str) -> anyhow::Result<Client> {
    let client =
        Client::with_existing_session(&base_url(url), session, hyper_tls::HttpsConnector::new())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    client.persist().await?;
    Ok(client)
}

/// Asks the server at `url` what it is. A server that does not answer
/// `/status` is treated as a plain WebDriver server (the session request
/// that follows then says what is wrong).
pub async fn probe(url: &str) -> ServerInfo {
    let ask = async {
        let client = bare_client(url, "status").await?;
        let v = client
            .issue_cmd(command(http::Method::GET, "status", None, false))
            .await?;
        Ok::<_, anyhow::Error>(v)
    };
    match tokio::time::timeout(EXCHANGE_LIMIT, ask).await {
        Ok(Ok(v)) => server_info(&v),
        Ok(Err(e)) => {
            tracing::debug!("no /status at {url}: {e:#}");
            ServerInfo::default()
        }
        Err(_) => ServerInfo::default(),
    }
}

/// A raw WebDriver command: `path` relative to the session
/// (`in_session`, e.g. `se/files`) or to the server (`status`).
#[derive(Debug)]
pub struct Raw {
    method: http::Method,
    path: String,
    body: Option<Value>,
    in_session: bool,
}

pub fn command(method: http::Method, path: &str, body: Option<Value>, in_session: bool) -> Raw {
    Raw {
        method,
        path: path.to_string(),
        body,
        in_session,
    }
}

impl WebDriverCompatibleCommand for Raw {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        if self.in_session {
            base_url.join(&format!(
                "session/{}/{}",
                session_id.unwrap_or_default(),
                self.path
            ))
        } else {
            base_url.join(&self.path)
        }
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (
            self.method.clone(),
            self.body.as_ref().map(Value::to_string),
        )
    }
}

/// Sends a Chrome DevTools command through the session (chromedriver's
/// `goog/cdp/execute`; a Grid forwards it to its node).
pub async fn cdp(client: &Client, body: Value) -> anyhow::Result<Value> {
    let v = tokio::time::timeout(
        EXCHANGE_LIMIT,
        client.issue_cmd(command(
            http::Method::POST,
            "goog/cdp/execute",
            Some(body),
            true,
        )),
    )
    .await
    .map_err(|_| anyhow::anyhow!("no answer within {} s", EXCHANGE_LIMIT.as_secs()))??;
    Ok(v)
}

/// The Grid side of a run's session.
#[derive(Debug, Clone)]
pub struct Remote {
    pub url: String,
    pub session: String,
    /// The Grid keeps downloads for clerk to fetch (`se:downloadsEnabled`).
    pub downloads: bool,
}

impl Remote {
    /// The files in the session's download folder on its node.
    pub async fn files(&self, client: &Client) -> Result<BTreeMap<String, u64>, BrowserError> {
        if !self.downloads {
            return Err(BrowserError::permanent(format!(
                "the Grid at {} does not offer managed downloads, so a file the browser saves stays \
                 on the node: start its nodes with `--enable-managed-downloads true`",
                self.url
            )));
        }
        let v = tokio::time::timeout(
            EXCHANGE_LIMIT,
            client.issue_cmd(command(http::Method::GET, "se/files", None, true)),
        )
        .await
        .map_err(|_| {
            BrowserError::retryable(format!(
                "the Grid did not list the session's downloads within {} s",
                EXCHANGE_LIMIT.as_secs()
            ))
        })?
        .map_err(|e| {
            BrowserError::retryable(format!(
                "cannot list the session's downloads on the Grid: {}",
                super::super::wd_message(&e)
            ))
        })?;
        Ok(listing(&v))
    }

    /// Waits until a file not in `before` is complete on the node, fetches it
    /// and writes it into `dest` (the run's downloads folder); returns its path.
    pub async fn wait_download(
        &self,
        client: &Client,
        before: &BTreeMap<String, u64>,
        dest: &Path,
        limit: Duration,
        what: &str,
    ) -> Result<PathBuf, BrowserError> {
        let started = Instant::now();
        let mut last: BTreeMap<String, u64> = BTreeMap::new();
        let mut pause = Duration::from_millis(50);
        let name = loop {
            let now = self.files(client).await?;
            let fresh: BTreeMap<&String, &u64> = now
                .iter()
                .filter(|(n, s)| before.get(*n) != Some(*s))
                .collect();
            let busy = fresh.keys().any(|n| is_partial(n));
            if !busy {
                // Finished when its size held still between two looks.
                let done = fresh
                    .iter()
                    .find(|(n, s)| last.get(n.as_str()) == Some(**s))
                    .map(|(n, _)| (*n).clone());
                if let Some(n) = done {
                    break n;
                }
            }
            last = fresh.iter().map(|(n, s)| ((*n).clone(), **s)).collect();
            if started.elapsed() >= limit {
                return Err(BrowserError::retryable(format!(
                    "{what} did not download a file on the Grid node within {} s{}",
                    limit.as_secs(),
                    if busy {
                        " (a download was still in progress)"
                    } else {
                        ""
                    }
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        };
        let v = tokio::time::timeout(
            Duration::from_secs(120),
            client.issue_cmd(command(
                http::Method::POST,
                "se/files",
                Some(json!({ "name": name })),
                true,
            )),
        )
        .await
        .map_err(|_| {
            BrowserError::retryable(format!(
                "the Grid did not send the download {name} within 120 s"
            ))
        })?
        .map_err(|e| {
            BrowserError::retryable(format!(
                "cannot fetch the download {name} from the Grid: {}",
                super::super::wd_message(&e)
            ))
        })?;
        let bytes = unpack(&v).map_err(|e| {
            BrowserError::permanent(format!(
                "the Grid sent the download {name} unreadably: {e:#}"
            ))
        })?;
        // The node's name is a plain file name; anything else is refused.
        let safe = Path::new(&name)
            .file_name()
            .filter(|n| n.to_string_lossy() == name && name != "." && name != "..")
            .ok_or_else(|| {
                BrowserError::permanent(format!("the Grid named the download {name:?}"))
            })?;
        std::fs::create_dir_all(dest).map_err(|e| {
            BrowserError::permanent(format!("cannot create {}: {e}", dest.display()))
        })?;
        let path = dest.join(safe);
        crate::fsutil::write_atomic(&path, &bytes).map_err(|e| {
            BrowserError::permanent(format!(
                "cannot save the download {}: {e:#}",
                path.display()
            ))
        })?;
        Ok(path)
    }
}

/// A download Chromium is still writing.
fn is_partial(name: &str) -> bool {
    name.ends_with(".crdownload")
        || name.ends_with(".tmp")
        || name.starts_with(".com.google.Chrome")
}

/// `{ names, files: [{ name, size }] }` of `GET se/files` as name → size
/// (older Grids send only names: size 0).
fn listing(v: &Value) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    if let Some(files) = v.get("files").and_then(Value::as_array) {
        for f in files {
            if let Some(n) = f.get("name").and_then(Value::as_str) {
                let size = f.get("size").and_then(Value::as_u64).unwrap_or(0);
                out.insert(n.to_string(), size);
            }
        }
    }
    if let Some(names) = v.get("names").and_then(Value::as_array) {
        for n in names.iter().filter_map(Value::as_str) {
            out.entry(n.to_string()).or_insert(0);
        }
    }
    out
}

/// The file inside the zip (base64) the Grid sends for `POST se/files`.
fn unpack(v: &Value) -> anyhow::Result<Vec<u8>> {
    let b64 = v
        .get("contents")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow::anyhow!("no `contents` in the answer"))?;
    let zipped = base64::engine::general_purpose::STANDARD.decode(b64.trim())?;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zipped))?;
    if archive.is_empty() {
        anyhow::bail!("the archive is empty");
    }
    let mut entry = archive.by_index(0)?;
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A remote session written down while it is open.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionRecord {
    pub webdriver_url: String,
    pub session: String,
    pub run: String,
    pub host: String,
    pub pid: u32,
    /// The owner's start time (clock ticks after boot): tells a reused pid.
    pub pid_started: u64,
    pub opened_at: String,
}

/// The record file of an open remote session; removed when it is closed.
#[derive(Debug)]
pub struct Record {
    path: PathBuf,
}

impl Record {
    /// Writes `.clerk/grid-sessions/<session>.json` for this process.
    pub fn write(workspace: &Path, url: &str, session: &str, run: &str) -> anyhow::Result<Record> {
        let dir = workspace.join(RECORDS);
        std::fs::create_dir_all(&dir)?;
        let (pid, pid_started) = crate::process::me();
        let rec = SessionRecord {
            webdriver_url: url.to_string(),
            session: session.to_string(),
            run: run.to_string(),
            host: crate::process::hostname(),
            pid,
            pid_started,
            opened_at: chrono::Utc::now().to_rfc3339(),
        };
        let path = dir.join(format!("{}.json", file_stem(session)));
        crate::fsutil::write_atomic(&path, serde_json::to_string_pretty(&rec)?.as_bytes())?;
        Ok(Record { path })
    }

    /// The session is closed: forget it.
    pub fn remove(self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove {}: {e}", self.path.display());
        }
    }
}

/// A session id as a file name (Grid ids are hex, but be safe).
fn file_stem(session: &str) -> String {
    session
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// How a recorded session of a gone owner was dealt with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swept {
    /// The Grid closed it.
    Closed,
    /// The Grid no longer knew it (timed out, or the Grid restarted).
    AlreadyGone,
}

/// Records older than this are dropped even when the Grid cannot be reached:
/// any Grid has timed the session out by then.
const RECORD_MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// Closes the recorded remote sessions whose owner process (on this host) is
/// gone, and forgets them. Sessions of live processes are left alone. A Grid
/// that cannot be reached keeps the record for the next start.
pub async fn sweep(workspace: &Path) -> Vec<(SessionRecord, Swept)> {
    let dir = workspace.join(RECORDS);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let host = crate::process::hostname();
    let mut done = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(rec) = serde_json::from_str::<SessionRecord>(&text) else {
            tracing::warn!("{}: not a clerk session record; left alone", path.display());
            continue;
        };
        if rec.host != host || !crate::process::is_gone(rec.pid, rec.pid_started) {
            continue;
        }
        match close_recorded(&rec).await {
            Ok(how) => {
                let _ = std::fs::remove_file(&path);
                done.push((rec, how));
            }
            Err(e) => {
                let old = chrono::DateTime::parse_from_rfc3339(&rec.opened_at)
                    .map(|t| chrono::Utc::now() - t.to_utc() > RECORD_MAX_AGE)
                    .unwrap_or(true);
                if old {
                    let _ = std::fs::remove_file(&path);
                }
                tracing::warn!(
                    session = %rec.session,
                    run = %rec.run,
                    "cannot close the Grid session left by a clerk process that is gone: {e:#}{}",
                    if old { " (record dropped: over a day old)" } else { "" }
                );
            }
        }
    }
    done
}

/// `DELETE /session/{id}` on the recorded Grid.
async fn close_recorded(rec: &SessionRecord) -> anyhow::Result<Swept> {
    let close = async {
        let client = bare_client(&rec.webdriver_url, &rec.session).await?;
        let path = format!("session/{}", rec.session);
        match client
            .issue_cmd(command(http::Method::DELETE, &path, None, false))
            .await
        {
            Ok(_) => Ok(Swept::Closed),
            // The Grid timed it out already, or was restarted.
            Err(e) if e.is_invalid_session_id() => Ok(Swept::AlreadyGone),
            Err(e) => Err(anyhow::anyhow!("{}", super::super::wd_message(&e))),
        }
    };
    tokio::time::timeout(EXCHANGE_LIMIT, close)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {} s", EXCHANGE_LIMIT.as_secs()))?
}

/// Merges `extra` into `base`: maps key by key (recursively), lists
/// appended (without duplicates, so `args` add flags), anything else replaced.
pub fn merge(base: &mut Value, extra: &Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                match b.get_mut(k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(b), Value::Array(e)) => {
            for v in e {
                if !b.contains(v) {
                    b.push(v.clone());
                }
            }
        }
        (b, e) => *b = e.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grid_with_managed_downloads_is_recognised() {
        let grid = json!({ "ready": true, "nodes": [ { "slots": [
            { "stereotype": { "browserName": "chrome", "se:downloadsEnabled": true } }
        ] } ] });
        assert_eq!(
            server_info(&grid),
            ServerInfo {
                grid: true,
                downloads: true
            }
        );
        let plain = json!({ "ready": true, "nodes": [ { "slots": [
            { "stereotype": { "browserName": "chrome" } }
        ] } ] });
        assert_eq!(
            server_info(&plain),
            ServerInfo {
                grid: true,
                downloads: false
            }
        );
        let chromedriver = json!({ "ready": true, "message": "ChromeDriver ready", "build": {} });
        assert_eq!(server_info(&chromedriver), ServerInfo::default());
    }

    #[test]
    fn capabilities_merge_maps_and_append_flags() {
        let mut base = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "args": ["--headless=new", "--no-sandbox"], "prefs": { "a": 1 } }
        });
        merge(
            &mut base,
            &json!({
                "platformName": "windows",
                "browserName": "MicrosoftEdge",
                "goog:chromeOptions": { "args": ["--lang=de", "--no-sandbox"], "prefs": { "b": 2 } }
            }),
        );
        assert_eq!(
            base,
            json!({
                "browserName": "MicrosoftEdge",
                "goog:chromeOptions": {
                    "args": ["--headless=new", "--no-sandbox", "--lang=de"],
                    "prefs": { "a": 1, "b": 2 }
                },
                "platformName": "windows"
            })
        );
    }

    #[test]
    fn downloads_listing_and_archive_are_read() {
        let v = json!({ "names": ["a.csv", "b.crdownload"], "files": [
            { "name": "a.csv", "size": 12 }, { "name": "b.crdownload", "size": 3 } ] });
        let l = listing(&v);
        assert_eq!(l.get("a.csv"), Some(&12));
        assert_eq!(l.len(), 2);
        assert_eq!(listing(&json!({ "names": ["x"] })).get("x"), Some(&0));

        // A zip made the way the Grid makes it (one deflated entry).
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            w.start_file::<_, ()>("a.csv", zip::write::FileOptions::default())
                .unwrap();
            std::io::Write::write_all(&mut w, b"id,name\n1,x\n").unwrap();
            w.finish().unwrap();
        }
        let b64 = base64::engine::general_purpose::STANDARD.encode(buf.into_inner());
        let bytes = unpack(&json!({ "filename": "a.csv", "contents": b64 })).unwrap();
        assert_eq!(bytes, b"id,name\n1,x\n");
        assert!(unpack(&json!({})).is_err());
    }

    #[test]
    fn records_of_gone_owners_only_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        // Ours (a live process): kept.
        let mine = Record::write(dir.path(), "http://127.0.0.1:9/", "live1", "run1").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let swept = rt.block_on(sweep(dir.path()));
        assert!(swept.is_empty());
        assert!(dir.path().join(RECORDS).join("live1.json").exists());
        mine.remove();
        assert!(!dir.path().join(RECORDS).join("live1.json").exists());
        // A gone owner whose Grid cannot be reached: kept for the next start.
        let rec = SessionRecord {
            webdriver_url: "http://127.0.0.1:9/".into(),
            session: "dead1".into(),
            run: "run2".into(),
            host: crate::process::hostname(),
            pid: u32::MAX - 3,
            pid_started: 1,
            opened_at: chrono::Utc::now().to_rfc3339(),
        };
        let p = dir.path().join(RECORDS).join("dead1.json");
        std::fs::write(&p, serde_json::to_string(&rec).unwrap()).unwrap();
        assert!(rt.block_on(sweep(dir.path())).is_empty());
        assert!(p.exists(), "kept while the Grid cannot be reached");
        // ... unless it is over a day old.
        let old = SessionRecord {
            opened_at: (chrono::Utc::now() - chrono::TimeDelta::hours(25)).to_rfc3339(),
            ..rec
        };
        std::fs::write(&p, serde_json::to_string(&old).unwrap()).unwrap();
        rt.block_on(sweep(dir.path()));
        assert!(!p.exists());
    }
}
