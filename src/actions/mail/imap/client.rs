//! The IMAP connection: TCP, plain / STARTTLS / implicit TLS through
//! native-tls (as lettre does for SMTP), LOGIN with the password from the
//! secret named in clerk.yaml, every command bounded by `imap.timeout`.
//!
//! Failures are sorted for the engine's retry policy ([`ImapError::kind`]):
//! no connection, a timeout or a connection lost midway are worth another
//! attempt; a refused login, a certificate that fails verification, a
//! mailbox that does not exist are not. Messages name the server and never
//! the password.

use std::fmt::Debug;
use std::time::Duration;

use futures::TryStreamExt as _;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::actions::{ActionError, ErrorKind};
use crate::config::{ImapConfig, SmtpTls};

/// The byte stream under the IMAP client: TCP, or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync + Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync + Debug> Io for T {}

pub type Session = async_imap::Session<Box<dyn Io>>;

/// A failed IMAP operation: what kind, and a sentence naming the server.
#[derive(Debug)]
pub struct ImapError {
    pub kind: ErrorKind,
    pub message: String,
}

impl std::fmt::Display for ImapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ImapError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ImapError {
            kind,
            message: crate::secrets::redact(&message.into()),
        }
    }

    pub fn retryable(&self) -> bool {
        self.kind.is_retryable()
    }
}

impl From<ImapError> for ActionError {
    fn from(e: ImapError) -> Self {
        ActionError::new(e.kind, anyhow::anyhow!(e.message))
    }
}

/// `host:port` of the configured server.
pub fn server(cfg: &ImapConfig) -> String {
    format!("{}:{}", cfg.host, port(cfg))
}

pub fn port(cfg: &ImapConfig) -> u16 {
    cfg.port.unwrap_or(match cfg.tls {
        SmtpTls::Tls => 993,
        _ => 143,
    })
}

/// The password from the secret `imap.password_secret` names.
pub fn password(cfg: &ImapConfig, secrets: &crate::secrets::Secrets) -> Result<String, ImapError> {
    let usage = |m: String| ImapError::new(ErrorKind::Usage, m);
    match (&cfg.username, &cfg.password_secret) {
        (None, _) => Err(usage(
            "clerk.yaml has no `imap.username`: set `imap: { host, port, tls, username, password_secret }` (or CLERK_IMAP_*)".into(),
        )),
        (Some(_), None) => Err(usage(
            "clerk.yaml sets `imap.username` but no `imap.password_secret` (the name of the secret holding the password)".into(),
        )),
        (Some(_), Some(name)) => secrets.get(name).ok_or_else(|| {
            usage(format!(
                "the IMAP password secret `{name}` is not set: set CLERK_SECRET_{} or add `{name}` to {}",
                name.to_ascii_uppercase(),
                secrets.file_path().display()
            ))
        }),
    }
}

/// An open, logged-in connection.
pub struct Conn {
    pub session: Session,
    pub server: String,
    pub timeout: Duration,
}

/// Runs one IMAP step under the configured timeout, sorting its failure.
pub async fn timed<T>(
    server: &str,
    timeout: Duration,
    what: &str,
    fut: impl Future<Output = async_imap::error::Result<T>>,
) -> Result<T, ImapError> {
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(ImapError::new(
            ErrorKind::System,
            format!(
                "the IMAP server {server} did not answer {what} within {}",
                humantime::format_duration(timeout)
            ),
        )),
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(classify(server, what, e)),
    }
}

fn classify(server: &str, what: &str, e: async_imap::error::Error) -> ImapError {
    use async_imap::error::Error as E;
    match e {
        E::No(text) => ImapError::new(
            ErrorKind::Usage,
            format!(
                "the IMAP server {server} refused {what}: NO {}",
                reply(&text)
            ),
        ),
        E::Bad(text) => ImapError::new(
            ErrorKind::Usage,
            format!(
                "the IMAP server {server} rejected {what}: BAD {}",
                reply(&text)
            ),
        ),
        E::Validate(v) => ImapError::new(ErrorKind::Usage, format!("{what}: {v}")),
        E::Io(io) => ImapError::new(
            ErrorKind::System,
            format!("the connection to the IMAP server {server} failed during {what}: {io}"),
        ),
        other => ImapError::new(
            ErrorKind::System,
            format!("the connection to the IMAP server {server} failed during {what}: {other}"),
        ),
    }
}

/// async-imap renders a NO/BAD as `code: Some(TryCreate), info: Some("...")`;
/// this gives it back as the server said it: `[TRYCREATE] Mailbox doesn't exist`.
pub fn reply(text: &str) -> String {
    let text = text.trim();
    let Some(info_at) = text.find("info: Some(\"") else {
        return text.to_string();
    };
    let info = text[info_at + 12..]
        .trim_end_matches(')')
        .trim_end_matches('"')
        .replace("\\\"", "\"");
    let code = text
        .strip_prefix("code: Some(")
        .and_then(|c| c.split(')').next())
        .map(|c| format!("[{}] ", c.to_ascii_uppercase()))
        .unwrap_or_default();
    format!("{code}{info}")
}

/// Connects, upgrades to TLS as configured and logs in.
pub async fn connect(cfg: &ImapConfig, password: &str) -> Result<Conn, ImapError> {
    let server = server(cfg);
    let timeout = cfg.timeout;
    let username = cfg.username.clone().unwrap_or_default();
    let tcp = match tokio::time::timeout(
        timeout,
        tokio::net::TcpStream::connect((cfg.host.as_str(), port(cfg))),
    )
    .await
    {
        Err(_) => {
            return Err(ImapError::new(
                ErrorKind::System,
                format!(
                    "cannot reach the IMAP server {server}: no connection within {}",
                    humantime::format_duration(timeout)
                ),
            ));
        }
        Ok(Err(e)) => {
            return Err(ImapError::new(
                ErrorKind::System,
                format!("cannot reach the IMAP server {server}: {e}"),
            ));
        }
        Ok(Ok(s)) => s,
    };
    let stream: Box<dyn Io> = match cfg.tls {
        SmtpTls::None => Box::new(tcp),
        SmtpTls::Tls => Box::new(tls(cfg, &server, tcp).await?),
        SmtpTls::Starttls => {
            let mut client = async_imap::Client::new(tcp);
            greeting(&mut client, &server, timeout).await?;
            timed(
                &server,
                timeout,
                "STARTTLS",
                client.run_command_and_check_ok("STARTTLS", None),
            )
            .await
            .map_err(|e| {
                ImapError::new(
                    ErrorKind::Usage,
                    format!(
                        "{} (imap.tls is `starttls`; the server may not offer it: try `tls` or `none`)",
                        e.message
                    ),
                )
            })?;
            Box::new(tls(cfg, &server, client.into_inner()).await?)
        }
    };
    let mut client = async_imap::Client::new(stream);
    if cfg.tls != SmtpTls::Starttls {
        greeting(&mut client, &server, timeout).await?;
    }
    let session = match tokio::time::timeout(timeout, client.login(&username, password)).await {
        Err(_) => {
            return Err(ImapError::new(
                ErrorKind::System,
                format!(
                    "the IMAP server {server} did not answer LOGIN within {}",
                    humantime::format_duration(timeout)
                ),
            ));
        }
        Ok(Ok(s)) => s,
        Ok(Err((async_imap::error::Error::No(text), _))) => {
            return Err(ImapError::new(
                ErrorKind::Usage,
                format!(
                    "the IMAP server {server} refused the login of `{username}`: {} (check the password in the secret named by imap.password_secret; not retried)",
                    reply(&text)
                ),
            ));
        }
        Ok(Err((e, _))) => return Err(classify(&server, "LOGIN", e)),
    };
    Ok(Conn {
        session,
        server,
        timeout,
    })
}

async fn greeting<T: AsyncRead + AsyncWrite + Unpin + Send + Debug>(
    client: &mut async_imap::Client<T>,
    server: &str,
    timeout: Duration,
) -> Result<(), ImapError> {
    match tokio::time::timeout(timeout, client.read_response()).await {
        Err(_) => Err(ImapError::new(
            ErrorKind::System,
            format!(
                "the IMAP server {server} sent no greeting within {}",
                humantime::format_duration(timeout)
            ),
        )),
        Ok(Ok(Some(_))) => Ok(()),
        Ok(Ok(None)) => Err(ImapError::new(
            ErrorKind::System,
            format!("the IMAP server {server} closed the connection before its greeting"),
        )),
        Ok(Err(e)) => {
            let text = e.to_string();
            let hint = if text.to_ascii_lowercase().contains("parse") {
                " (is it speaking TLS? check `imap.tls`)"
            } else {
                ""
            };
            Err(ImapError::new(
                ErrorKind::System,
                format!("cannot read the greeting of the IMAP server {server}: {text}{hint}"),
            ))
        }
    }
}

async fn tls(
    cfg: &ImapConfig,
    server: &str,
    tcp: tokio::net::TcpStream,
) -> Result<tokio_native_tls::TlsStream<tokio::net::TcpStream>, ImapError> {
    let connector = tokio_native_tls::native_tls::TlsConnector::builder()
        .danger_accept_invalid_certs(cfg.accept_invalid_certs)
        .danger_accept_invalid_hostnames(cfg.accept_invalid_certs)
        .build()
        .map_err(|e| {
            ImapError::new(
                ErrorKind::Usage,
                format!("cannot set up TLS for the IMAP server {server}: {e}"),
            )
        })?;
    let connector = tokio_native_tls::TlsConnector::from(connector);
    match tokio::time::timeout(cfg.timeout, connector.connect(&cfg.host, tcp)).await {
        Err(_) => Err(ImapError::new(
            ErrorKind::System,
            format!(
                "TLS with the IMAP server {server} did not complete within {}",
                humantime::format_duration(cfg.timeout)
            ),
        )),
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => {
            let text = e.to_string();
            let hint = if text.to_ascii_lowercase().contains("certificate")
                && !cfg.accept_invalid_certs
            {
                "; if the server uses a self-signed certificate (test servers only), set `imap.accept_invalid_certs: true`"
            } else if text.contains("wrong version number") {
                "; check `imap.tls`: `tls` speaks TLS from the first byte (usually port 993), `starttls` upgrades a plain connection (usually port 143)"
            } else {
                ""
            };
            Err(ImapError::new(
                ErrorKind::Usage,
                format!("TLS with the IMAP server {server} failed: {text}{hint}"),
            ))
        }
    }
}

impl Conn {
    /// SELECTs `mailbox` (EXAMINE when `read_only`); returns its UIDVALIDITY
    /// and UIDNEXT.
    pub async fn select(
        &mut self,
        mailbox: &str,
        read_only: bool,
    ) -> Result<(u32, u32), ImapError> {
        let what = format!("SELECT {mailbox}");
        let mb = if read_only {
            timed(
                &self.server,
                self.timeout,
                &what,
                self.session.examine(mailbox),
            )
            .await?
        } else {
            timed(
                &self.server,
                self.timeout,
                &what,
                self.session.select(mailbox),
            )
            .await?
        };
        let validity = mb.uid_validity.ok_or_else(|| {
            ImapError::new(
                ErrorKind::System,
                format!(
                    "the IMAP server {} sent no UIDVALIDITY for {mailbox}",
                    self.server
                ),
            )
        })?;
        Ok((validity, mb.uid_next.unwrap_or(0)))
    }

    /// `UID SEARCH query`, sorted.
    pub async fn uid_search(&mut self, query: &str) -> Result<Vec<u32>, ImapError> {
        let set = timed(
            &self.server,
            self.timeout,
            "UID SEARCH",
            self.session.uid_search(query),
        )
        .await?;
        let mut v: Vec<u32> = set.into_iter().collect();
        v.sort_unstable();
        Ok(v)
    }

    /// `UID FETCH set items`, collected.
    pub async fn uid_fetch(
        &mut self,
        set: &str,
        items: &str,
    ) -> Result<Vec<async_imap::types::Fetch>, ImapError> {
        let server = self.server.clone();
        let timeout = self.timeout;
        let session = &mut self.session;
        timed(&server, timeout, "UID FETCH", async move {
            let stream = session.uid_fetch(set, items).await?;
            stream.try_collect::<Vec<_>>().await
        })
        .await
    }

    /// Runs a command that answers only OK/NO/BAD (UID MOVE, UID STORE...).
    pub async fn command(&mut self, cmd: &str, what: &str) -> Result<(), ImapError> {
        timed(
            &self.server,
            self.timeout,
            what,
            self.session.run_command_and_check_ok(cmd),
        )
        .await
    }

    pub async fn noop(&mut self) -> Result<(), ImapError> {
        timed(&self.server, self.timeout, "NOOP", self.session.noop()).await
    }

    /// Whether the server offers `cap` (e.g. IDLE, MOVE, UIDPLUS).
    pub async fn has_capability(&mut self, cap: &str) -> Result<bool, ImapError> {
        let caps = timed(
            &self.server,
            self.timeout,
            "CAPABILITY",
            self.session.capabilities(),
        )
        .await?;
        Ok(caps.has_str(cap))
    }

    /// LOGOUT, best effort.
    pub async fn logout(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.session.logout()).await;
    }
}

/// An IMAP quoted string; refuses line breaks (they would end the command).
pub fn quote(s: &str) -> Result<String, ImapError> {
    if s.contains(['\r', '\n', '\0']) {
        return Err(ImapError::new(
            ErrorKind::Usage,
            format!(
                "`{}` contains a line break, which IMAP cannot carry",
                s.escape_debug()
            ),
        ));
    }
    Ok(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// A UID set (`1,5,7`) from a list.
pub fn uid_set(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
