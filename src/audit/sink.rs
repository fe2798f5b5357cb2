//! Copies of the checkpoints outside this machine: besides the append-only
//! file, every checkpoint can be POSTed to an HTTP(S) endpoint
//! (`audit.http`) and mailed to the auditors (`audit.smtp`). A copy someone
//! else keeps is what makes a checkpoint worth having: whoever can edit the
//! database and the local file cannot reach the auditors' mailbox.
//!
//! Both sinks work from the checkpoint file and a cursor beside it
//! (`<file>.http.sent`, `<file>.smtp.sent`: how many lines were delivered),
//! so nothing is lost when a sink is down: the next delivery sends what is
//! still pending, in order. A failed delivery is an `audit.sink_failed`
//! event in the chain (the auditors' copy has a hole; the chain says so).
//!
//! - **HTTP**: one POST per checkpoint, the checkpoint record as JSON
//!   (`Content-Type: application/json`), optionally with `Authorization:
//!   Bearer <secret>`; any 2xx is delivered. Each attempt has `timeout`, up
//!   to `attempts` attempts with 0.5 s, 1 s, 2 s... between them, and the
//!   first checkpoint that still fails ends the delivery — so the end of a
//!   run waits at most about `attempts × timeout` for a dead endpoint.
//! - **SMTP**: a digest. Checkpoints are mailed at most once per `every`
//!   (default 24 h; `every: 0s` mails each checkpoint as it is taken): one
//!   mail with the pending checkpoints as a `checkpoints-….jsonl` attachment
//!   (the exact lines of the file, so `clerk audit verify --checkpoints
//!   ATTACHMENT` works on it) and a readable list in the text. The server
//!   is `mail.smtp` of clerk.yaml, the sender `mail.from`.
//!
//! Deliveries of two clerk processes do not overlap (a lock file beside the
//! cursor); one finding the lock taken leaves the work to the other.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::config::{HttpSinkConfig, SmtpSinkConfig};
use super::event::NewEvent;
use crate::config::{Config, SmtpTls};
use crate::store::Store;

/// Where a sink is: how many lines of the checkpoint file it has, and when
/// it last got some.
#[derive(Serialize, Deserialize, Default, Debug, Clone, PartialEq)]
pub struct Cursor {
    pub lines: usize,
    #[serde(default)]
    pub at: Option<String>,
}

/// What one delivery did (for the CLI and tests).
#[derive(Serialize, Debug, Clone, Default, PartialEq)]
pub struct Delivered {
    pub sink: String,
    pub sent: usize,
    pub pending: usize,
    pub error: Option<String>,
}

fn cursor_path(file: &Path, sink: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(format!(".{sink}.sent"));
    PathBuf::from(name)
}

/// Reads a sink's cursor (none yet: nothing delivered).
pub fn read_cursor(file: &Path, sink: &str) -> Cursor {
    std::fs::read_to_string(cursor_path(file, sink))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn write_cursor(file: &Path, sink: &str, c: &Cursor) -> anyhow::Result<()> {
    let text = serde_json::to_vec(c).context("serialise the sink cursor")?;
    crate::fsutil::write_atomic(&cursor_path(file, sink), &text)
        .with_context(|| format!("cannot save the {sink} sink's cursor"))
}

/// An exclusive, non-blocking lock on `<file>.<sink>.lock`; `None` when
/// another process holds it.
struct Lock(#[allow(dead_code)] std::fs::File);

fn try_lock(file: &Path, sink: &str) -> anyhow::Result<Option<Lock>> {
    use std::os::fd::AsRawFd as _;
    let mut name = file.as_os_str().to_owned();
    name.push(format!(".{sink}.lock"));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(PathBuf::from(&name))
        .with_context(|| {
            format!(
                "cannot open the lock file {}",
                PathBuf::from(&name).display()
            )
        })?;
    // SAFETY: flock on a descriptor we own; released when the file closes.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    Ok((rc == 0).then_some(Lock(f)))
}

/// The checkpoint file's non-empty lines after `skip`.
fn pending_lines(file: &Path, skip: usize) -> anyhow::Result<(usize, Vec<String>)> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, Vec::new())),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read the checkpoint file {}", file.display()));
        }
    };
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    let total = lines.len();
    Ok((total, lines.into_iter().skip(skip).collect()))
}

/// Delivers pending checkpoints to every configured sink. Never fails: a
/// sink that cannot be reached is logged and audited, and tried again next
/// time.
pub async fn deliver_all(store: &Store, config: &Config, workspace: &Path) -> Vec<Delivered> {
    let file = config.audit.checkpoints_path(workspace);
    let mut out = Vec::new();
    if let Some(http) = &config.audit.http {
        out.push(
            deliver(store, &file, "http", || {
                post_pending(http, &file, workspace)
            })
            .await,
        );
    }
    if let Some(smtp) = &config.audit.smtp {
        out.push(
            deliver(store, &file, "smtp", || {
                mail_pending(smtp, config, &file, workspace)
            })
            .await,
        );
    }
    out
}

async fn deliver<F, Fut>(store: &Store, file: &Path, sink: &str, run: F) -> Delivered
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Delivered>>,
{
    let lock = match try_lock(file, sink) {
        Ok(Some(l)) => l,
        Ok(None) => {
            return Delivered {
                sink: sink.into(),
                ..Default::default()
            };
        }
        Err(e) => {
            return failed(store, sink, 0, format!("{e:#}")).await;
        }
    };
    let d = match run().await {
        Ok(d) => d,
        Err(e) => Delivered {
            sink: sink.into(),
            error: Some(format!("{e:#}")),
            ..Default::default()
        },
    };
    drop(lock);
    match d.error.clone() {
        Some(e) => {
            let mut f = failed(store, sink, d.pending, e).await;
            f.sent = d.sent;
            f
        }
        None => d,
    }
}

/// Logs and audits a failed delivery.
async fn failed(store: &Store, sink: &str, pending: usize, error: String) -> Delivered {
    let error = crate::secrets::redact(&error);
    tracing::warn!(sink, pending, error = %error, "cannot deliver the audit checkpoints");
    let event = NewEvent::new("audit.sink_failed", "clerk")
        .target(sink)
        .outcome("failed")
        .error(error.clone())
        .detail(json!({ "sink": sink, "pending": pending }));
    if let Err(e) = store.append_event(event).await {
        tracing::warn!(error = %e, "cannot record audit.sink_failed");
    }
    Delivered {
        sink: sink.into(),
        sent: 0,
        pending,
        error: Some(error),
    }
}

/// POSTs each pending checkpoint; stops at the first that still fails.
async fn post_pending(
    cfg: &HttpSinkConfig,
    file: &Path,
    workspace: &Path,
) -> anyhow::Result<Delivered> {
    let mut cursor = read_cursor(file, "http");
    let (total, lines) = pending_lines(file, cursor.lines)?;
    if total < cursor.lines {
        anyhow::bail!(
            "the checkpoint file {} has {total} lines but {} were already delivered (was it truncated or replaced?)",
            file.display(),
            cursor.lines
        );
    }
    let token = match &cfg.token_secret {
        None => None,
        Some(name) => {
            let secrets = crate::secrets::Secrets::load(workspace)
                .map_err(|e| anyhow::anyhow!("cannot read the secrets: {e}"))?;
            Some(secrets.get(name).with_context(|| {
                format!(
                    "the audit HTTP token secret `{name}` is not set (CLERK_SECRET_{} or the secrets file)",
                    name.to_ascii_uppercase()
                )
            })?)
        }
    };
    let uri: hyper::Uri = cfg
        .url
        .parse()
        .with_context(|| format!("`audit.http.url` is not a URL: {}", shown_url(&cfg.url)))?;
    let https = hyper_tls::HttpsConnector::new();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, http_body_util::Full<bytes::Bytes>>(https);
    let mut d = Delivered {
        sink: "http".into(),
        pending: lines.len(),
        ..Default::default()
    };
    for line in lines {
        let mut last_err = String::new();
        let mut ok = false;
        for attempt in 1..=cfg.attempts.max(1) {
            if attempt > 1 {
                tokio::time::sleep(backoff(attempt - 1)).await;
            }
            match post_once(&client, &uri, &line, token.as_deref(), cfg.timeout).await {
                Ok(()) => {
                    ok = true;
                    break;
                }
                Err(e) => last_err = e,
            }
        }
        if !ok {
            d.error = Some(format!(
                "POST to {} failed after {} attempt(s): {last_err}",
                shown_url(&cfg.url),
                cfg.attempts.max(1)
            ));
            return Ok(d);
        }
        cursor.lines += 1;
        cursor.at = Some(crate::store::time::format_ts(
            &crate::store::time::now_micros(),
        ));
        write_cursor(file, "http", &cursor)?;
        d.sent += 1;
        d.pending -= 1;
    }
    Ok(d)
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_tls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<bytes::Bytes>,
>;

async fn post_once(
    client: &HttpClient,
    uri: &hyper::Uri,
    body: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<(), String> {
    use http_body_util::BodyExt as _;
    let mut req = hyper::Request::post(uri.clone())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, "clerk-audit-checkpoints");
    if let Some(t) = token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let exchange = async {
        let resp = client.request(req).await.map_err(|e| error_chain(&e))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            Ok(())
        } else {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).to_string();
            Err(format!("the server answered {status}: {}", text.trim()))
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

fn backoff(n: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << n.min(6).saturating_sub(1)))
}

/// The URL without its query or user info (which may hold a token).
fn shown_url(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or(url);
    crate::secrets::redact_url_password(no_query)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let inner = s.to_string();
        if !text.contains(&inner) {
            text = format!("{text}: {inner}");
        }
        cur = s.source();
    }
    text
}

/// Mails the pending checkpoints when `every` has passed since the last
/// mail (or always, with `every: 0s`).
async fn mail_pending(
    cfg: &SmtpSinkConfig,
    config: &Config,
    file: &Path,
    workspace: &Path,
) -> anyhow::Result<Delivered> {
    let mut cursor = read_cursor(file, "smtp");
    let (total, lines) = pending_lines(file, cursor.lines)?;
    if total < cursor.lines {
        anyhow::bail!(
            "the checkpoint file {} has {total} lines but {} were already mailed (was it truncated or replaced?)",
            file.display(),
            cursor.lines
        );
    }
    let mut d = Delivered {
        sink: "smtp".into(),
        pending: lines.len(),
        ..Default::default()
    };
    if lines.is_empty() {
        return Ok(d);
    }
    if let Some(at) = cursor.at.as_deref().and_then(crate::store::time::parse_ts)
        && !cfg.every.is_zero()
    {
        let since = (chrono::Utc::now() - at).to_std().unwrap_or_default();
        if since < cfg.every {
            return Ok(d); // not due yet: the digest collects
        }
    }
    if cfg.to.is_empty() {
        anyhow::bail!("`audit.smtp.to` names no recipient");
    }
    let message = digest(cfg, config, &lines)?;
    let smtp = &config.mail.smtp;
    let password = match (&smtp.username, &smtp.password_secret) {
        (Some(_), Some(name)) => {
            let secrets = crate::secrets::Secrets::load(workspace)
                .map_err(|e| anyhow::anyhow!("cannot read the secrets: {e}"))?;
            Some(secrets.get(name).with_context(|| {
                format!("the SMTP password secret `{name}` (mail.smtp.password_secret) is not set")
            })?)
        }
        (Some(_), None) => {
            anyhow::bail!("`mail.smtp.username` is set but not `mail.smtp.password_secret`")
        }
        _ => None,
    };
    send(smtp, password, message).await?;
    cursor.lines = total;
    cursor.at = Some(crate::store::time::format_ts(
        &crate::store::time::now_micros(),
    ));
    write_cursor(file, "smtp", &cursor)?;
    d.sent = d.pending;
    d.pending = 0;
    Ok(d)
}

/// The digest mail: a readable list and the lines as an attachment.
fn digest(
    cfg: &SmtpSinkConfig,
    config: &Config,
    lines: &[String],
) -> anyhow::Result<lettre::Message> {
    use lettre::message::{Attachment, MultiPart, SinglePart, header::ContentType};
    let cps: Vec<super::checkpoint::Checkpoint> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let (first, last) = match (cps.first(), cps.last()) {
        (Some(f), Some(l)) => (f.head_id, l.head_id),
        _ => (0, 0),
    };
    let mut text = format!(
        "clerk audit checkpoints: {} checkpoint(s), chain events up to {last}.\n\n\
         Keep this mail (or its attachment) where the clerk installation cannot reach it.\n\
         To check the audit trail against it:\n\n  \
         clerk audit verify --checkpoints checkpoints-{first}-{last}.jsonl\n\n",
        cps.len()
    );
    for cp in &cps {
        text.push_str(&format!(
            "  {}  event {:>8}  head {}  {}\n",
            cp.at,
            cp.head_id,
            cp.head_hash,
            if cp.signature.is_some() {
                "signed"
            } else {
                "UNSIGNED"
            }
        ));
    }
    if let Some(k) = cps.iter().find_map(|c| c.public_key.clone()) {
        text.push_str(&format!("\nSigning key (Ed25519, hex): {k}\n"));
    }
    let mut body = lines.join("\n");
    body.push('\n');
    let from = config
        .mail
        .from
        .parse()
        .with_context(|| format!("`mail.from` is not an address: {}", config.mail.from))?;
    let mut b = lettre::Message::builder()
        .from(from)
        .subject(format!("{} {first}..{last}", cfg.subject));
    for to in &cfg.to {
        b = b.to(to
            .parse()
            .with_context(|| format!("`audit.smtp.to` has a bad address: {to}"))?);
    }
    let jsonl = ContentType::parse("application/jsonl").unwrap_or(ContentType::TEXT_PLAIN);
    b.multipart(
        MultiPart::mixed()
            .singlepart(SinglePart::plain(text))
            .singlepart(
                Attachment::new(format!("checkpoints-{first}-{last}.jsonl")).body(body, jsonl),
            ),
    )
    .context("cannot build the checkpoint mail")
}

async fn send(
    cfg: &crate::config::SmtpConfig,
    password: Option<String>,
    message: lettre::Message,
) -> anyhow::Result<()> {
    use lettre::transport::smtp::authentication::{Credentials, Mechanism};
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
    let server = format!("{}:{}", cfg.host, cfg.port);
    let params = || {
        TlsParameters::builder(cfg.host.clone())
            .dangerous_accept_invalid_certs(cfg.accept_invalid_certs)
            .build()
            .with_context(|| format!("cannot set up TLS for the SMTP server {server}"))
    };
    let tls = match cfg.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::Starttls => Tls::Required(params()?),
        SmtpTls::Tls => Tls::Wrapper(params()?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.clone())
        .port(cfg.port)
        .timeout(Some(cfg.timeout))
        .tls(tls);
    if let Some(user) = &cfg.username {
        builder = builder
            .credentials(Credentials::new(user.clone(), password.unwrap_or_default()))
            .authentication(vec![Mechanism::Plain, Mechanism::Login]);
    }
    let transport = builder.build();
    // lettre's timeout covers connecting; the whole exchange gets 4 of them.
    let deadline = cfg.timeout.saturating_mul(4);
    match tokio::time::timeout(deadline, transport.send(message)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(anyhow::anyhow!(
            "the SMTP server {server} did not take the checkpoint mail: {}",
            error_chain(&e)
        )),
        Err(_) => Err(anyhow::anyhow!(
            "the SMTP exchange with {server} did not finish within {}",
            humantime::format_duration(deadline)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_millis(1000));
        assert_eq!(backoff(3), Duration::from_millis(2000));
    }

    #[test]
    fn shown_url_hides_tokens() {
        assert_eq!(
            shown_url("https://u:secret@h.example/cp?token=abc"),
            crate::secrets::redact_url_password("https://u:secret@h.example/cp")
        );
        assert!(!shown_url("https://h.example/cp?token=abc").contains("abc"));
    }

    #[test]
    fn cursor_lives_beside_the_file() {
        assert_eq!(
            cursor_path(Path::new("/w/.clerk/checkpoints.jsonl"), "http"),
            PathBuf::from("/w/.clerk/checkpoints.jsonl.http.sent")
        );
    }
}
