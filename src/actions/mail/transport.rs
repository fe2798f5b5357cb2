//! The two ways a message leaves clerk: an `.eml` file in the outbox (the
//! embedded default, no server needed) or SMTP through lettre.
//!
//! Success means "accepted": the file was renamed into place, or the SMTP
//! server answered 250 to the message data. Failures are sorted for the
//! engine's retry policy: no connection, timeouts and 4xx replies are worth
//! another attempt; 5xx replies, TLS certificate problems and bad settings are
//! not, and their error quotes the server's reply.

use std::error::Error as _;
use std::path::{Path, PathBuf};

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::message::Prepared;
use crate::actions::ActionError;
use crate::config::{SmtpConfig, SmtpTls};
use crate::fsutil::write_atomic;

/// What the transport reports once the message is accepted.
pub struct Delivery {
    /// The server's final reply (`250 2.0.0 Ok: queued as ...`) or where the file went.
    pub reply: String,
    /// The .eml file, for the file transport (absolute).
    pub file: Option<PathBuf>,
}

/// Writes the message to `<outbox>/<timestamp>-<message-id>.eml` atomically.
pub async fn send_file(outbox: &Path, prepared: &Prepared) -> Result<Delivery, ActionError> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
    let id: String = prepared
        .message_id
        .trim_matches(['<', '>'])
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = outbox.join(format!("{stamp}-{id}.eml"));
    let bytes = prepared.message.formatted();
    let target = path.clone();
    tokio::task::spawn_blocking(move || write_atomic(&target, &bytes))
        .await
        .map_err(|e| ActionError::permanent(anyhow::anyhow!("the outbox write task failed: {e}")))?
        .map_err(|e| ActionError::permanent(e.context("cannot write the message to the outbox")))?;
    Ok(Delivery {
        reply: "written to the outbox".into(),
        file: Some(path),
    })
}

/// Sends over SMTP; `password` comes from the secret named in the config.
/// The whole SMTP exchange of one attempt (connect, greeting, TLS, login, the
/// message and its reply) must finish within this many `mail.smtp.timeout`s.
pub const SMTP_DEADLINE_FACTOR: u32 = 4;

pub async fn send_smtp(
    cfg: &SmtpConfig,
    password: Option<String>,
    prepared: &Prepared,
) -> Result<Delivery, ActionError> {
    let server = format!("{}:{}", cfg.host, cfg.port);
    let tls_params = || {
        TlsParameters::builder(cfg.host.clone())
            .dangerous_accept_invalid_certs(cfg.accept_invalid_certs)
            .build()
            .map_err(|e| {
                ActionError::permanent(anyhow::anyhow!(
                    "cannot set up TLS for the SMTP server {server}: {}",
                    chain(&e)
                ))
            })
    };
    let tls = match cfg.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::Starttls => Tls::Required(tls_params()?),
        SmtpTls::Tls => Tls::Wrapper(tls_params()?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.clone())
        .port(cfg.port)
        .timeout(Some(cfg.timeout))
        .tls(tls);
    if let Some(user) = &cfg.username {
        let password = password.unwrap_or_default();
        builder = builder
            .credentials(Credentials::new(user.clone(), password))
            .authentication(vec![Mechanism::Plain, Mechanism::Login]);
    }
    let transport = builder.build();
    // lettre's timeout covers connecting only (a server that accepts and then
    // never answers would hang the run for good), so the whole exchange has a
    // deadline of its own: SMTP_DEADLINE_FACTOR × `mail.smtp.timeout`.
    let deadline = cfg.timeout.saturating_mul(SMTP_DEADLINE_FACTOR);
    let sent = match tokio::time::timeout(deadline, transport.send(prepared.message.clone())).await
    {
        Ok(r) => r,
        Err(_) => {
            return Err(ActionError::retryable(anyhow::anyhow!(
                "the SMTP exchange with {server} did not finish within {} (4 × `mail.smtp.timeout`); the server accepted the connection but stopped answering",
                humantime::format_duration(deadline)
            )));
        }
    };
    match sent {
        Ok(response) => {
            let text: Vec<&str> = response.message().collect();
            Ok(Delivery {
                reply: format!("{} {}", response.code(), text.join(" ")),
                file: None,
            })
        }
        Err(e) => Err(classify(&server, cfg, &e)),
    }
}

/// Sorts an SMTP failure into retryable and permanent, with a sentence that
/// says what happened and quotes the server.
fn classify(server: &str, cfg: &SmtpConfig, e: &lettre::transport::smtp::Error) -> ActionError {
    let reply = || {
        let code = e.status().map(|c| c.to_string()).unwrap_or_default();
        let text = e.source().map(|s| s.to_string()).unwrap_or_default();
        format!("{code} {text}").trim().to_string()
    };
    if e.is_permanent() {
        let reply = reply();
        let hint = if reply.contains("STARTTLS") && cfg.tls == SmtpTls::None {
            "; the server wants an encrypted connection: set `mail.smtp.tls: starttls`"
        } else {
            ""
        };
        return ActionError::permanent(anyhow::anyhow!(
            "the SMTP server {server} refused the message: {reply} (a permanent error; not retried){hint}"
        ));
    }
    if e.is_transient() {
        return ActionError::retryable(anyhow::anyhow!(
            "the SMTP server {server} temporarily refused the message: {}",
            reply()
        ));
    }
    if e.is_timeout() {
        return ActionError::retryable(anyhow::anyhow!(
            "the SMTP server {server} did not answer within {}",
            humantime::format_duration(cfg.timeout)
        ));
    }
    // native-tls handshake failures surface as connection errors; a
    // certificate that fails verification will fail the same way next time.
    let text = chain(e).to_ascii_lowercase();
    if e.is_tls() || text.contains("certificate") || text.contains("ssl routines") {
        let hint = if text.contains("certificate") && !cfg.accept_invalid_certs {
            "; if the server uses a self-signed certificate (test servers only), set \
             `mail.smtp.accept_invalid_certs: true`"
        } else if text.contains("wrong version number") {
            "; check `mail.smtp.tls`: `tls` speaks TLS from the first byte (usually port 465), \
             `starttls` upgrades a plain connection (usually port 587 or 25)"
        } else {
            ""
        };
        return ActionError::permanent(anyhow::anyhow!(
            "TLS with the SMTP server {server} failed: {}{hint}",
            chain(e)
        ));
    }
    if e.is_client() {
        return ActionError::permanent(anyhow::anyhow!(
            "cannot send to the SMTP server {server}: {}",
            chain(e)
        ));
    }
    ActionError::retryable(anyhow::anyhow!(
        "cannot reach the SMTP server {server}: {}",
        chain(e)
    ))
}

/// An error and its causes as one line, without repeating a cause that the
/// outer message already quotes (lettre nests "Connection error: ..." twice).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let inner = s.to_string();
        if !text.contains(&inner) {
            text = format!("{text}: {inner}");
        }
        cur = s.source();
    }
    let mut segments: Vec<&str> = Vec::new();
    for seg in text.split(": ") {
        if segments.last() != Some(&seg) {
            segments.push(seg);
        }
    }
    segments.join(": ")
}
