//! Workspace configuration: `clerk.yaml` plus `CLERK_*` environment overrides.
//!
//! Every key has a default, so a workspace without `clerk.yaml` runs on the
//! embedded defaults: SQLite in `.clerk/clerk.db`, mail to `.clerk/outbox/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::actions::types::DurationArg;

#[derive(Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `sqlite://.clerk/clerk.db` (default) or `postgres://user@host/db`.
    pub database: String,
    /// How many runs `clerk serve` executes at once.
    pub max_concurrent_runs: usize,
    pub browser: BrowserConfig,
    pub mail: MailConfig,
    /// Folders outside the workspace that actions may read and write (absolute,
    /// or relative to the workspace). Everything else outside is refused.
    pub allowed_roots: Vec<String>,
    /// Signing key, checkpoint file and interval (see docs/audit.md).
    pub audit: crate::audit::config::AuditConfig,
    /// The mailbox `mail.fetch` and bot mailbox triggers read (IMAP).
    pub imap: ImapConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BrowserConfig {
    /// chromedriver binary; default: found on PATH.
    pub chromedriver: Option<String>,
    /// Chromium binary; default: found on PATH.
    pub chromium: Option<String>,
    /// Use a running WebDriver server / Selenium Grid instead of starting chromedriver.
    pub webdriver_url: Option<String>,
    pub headless: bool,
    /// Headless runs use Chromium's headless shell (Debian's
    /// `chromium-headless-shell`) when it is installed and `chromium` is not
    /// set: it starts and loads pages about twice as fast as the full
    /// browser's headless mode. `false` keeps the full browser.
    pub headless_shell: bool,
    /// Default auto-wait per element action.
    #[serde(with = "duration_text")]
    #[schemars(with = "DurationArg")]
    pub timeout: Duration,
    /// WebDriver capabilities merged into the session request (maps merged
    /// key by key, lists appended): a browser, platform or version from a
    /// Grid, extra Chromium flags. See docs/browser.md.
    pub capabilities: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MailTransport {
    File,
    Smtp,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    None,
    Starttls,
    Tls,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    /// `file` (default: .eml files in the outbox) or `smtp`.
    pub transport: MailTransport,
    pub from: String,
    pub outbox: String,
    pub smtp: SmtpConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    /// Name of the secret holding the password (never the password itself).
    pub password_secret: Option<String>,
    #[serde(with = "duration_text")]
    #[schemars(with = "DurationArg")]
    pub timeout: Duration,
    /// Accept self-signed certificates (test servers only).
    pub accept_invalid_certs: bool,
}

/// Debug output never shows a password inside the database URL.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field(
                "database",
                &crate::secrets::redact_url_password(&self.database),
            )
            .field("max_concurrent_runs", &self.max_concurrent_runs)
            .field("browser", &self.browser)
            .field("mail", &self.mail)
            .field("allowed_roots", &self.allowed_roots)
            .finish_non_exhaustive()
    }
}

/// `imap:` in clerk.yaml: the server `mail.fetch`, `mail.move`, `mail.flag`,
/// `mail.delete` and bot `trigger:`s talk to. The password only ever comes
/// from the secret named by `password_secret`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ImapConfig {
    pub host: String,
    /// Default 143 (993 with `tls: tls`).
    pub port: Option<u16>,
    /// `none`, `starttls` or `tls` (IMAPS from the first byte).
    pub tls: SmtpTls,
    pub username: Option<String>,
    /// Name of the secret holding the password (never the password itself).
    pub password_secret: Option<String>,
    /// Per IMAP command (and for connecting).
    #[serde(with = "duration_text")]
    #[schemars(with = "DurationArg")]
    pub timeout: Duration,
    /// Accept self-signed certificates (test servers only).
    pub accept_invalid_certs: bool,
    /// Largest message `mail.fetch` accepts, in bytes (default 25 MB).
    pub max_message_size: u64,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            host: "127.0.0.1".into(),
            port: None,
            tls: SmtpTls::None,
            username: None,
            password_secret: None,
            timeout: Duration::from_secs(30),
            accept_invalid_certs: false,
            max_message_size: 25 * 1024 * 1024,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database: "sqlite://.clerk/clerk.db".into(),
            max_concurrent_runs: 2,
            browser: BrowserConfig::default(),
            mail: MailConfig::default(),
            allowed_roots: Vec::new(),
            audit: Default::default(),
            imap: ImapConfig::default(),
        }
    }
}

impl Default for BrowserConfig {
    fn default() -> Self {
        BrowserConfig {
            chromedriver: None,
            chromium: None,
            webdriver_url: None,
            headless: true,
            headless_shell: true,
            timeout: Duration::from_secs(10),
            capabilities: serde_json::Map::new(),
        }
    }
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            transport: MailTransport::File,
            from: "clerk@localhost".into(),
            outbox: ".clerk/outbox".into(),
            smtp: SmtpConfig::default(),
        }
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port: 25,
            tls: SmtpTls::None,
            username: None,
            password_secret: None,
            timeout: Duration::from_secs(30),
            accept_invalid_certs: false,
        }
    }
}

mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        crate::actions::types::DurationArg::deserialize(d).map(|a| a.0)
    }
}

/// `(environment variable, path in the YAML)`: every key can be overridden.
const ENV_KEYS: &[(&str, &[&str])] = &[
    ("CLERK_DATABASE_URL", &["database"]),
    ("CLERK_MAX_CONCURRENT_RUNS", &["max_concurrent_runs"]),
    ("CLERK_BROWSER_CHROMEDRIVER", &["browser", "chromedriver"]),
    ("CLERK_BROWSER_CHROMIUM", &["browser", "chromium"]),
    ("CLERK_BROWSER_WEBDRIVER_URL", &["browser", "webdriver_url"]),
    ("CLERK_BROWSER_HEADLESS", &["browser", "headless"]),
    (
        "CLERK_BROWSER_HEADLESS_SHELL",
        &["browser", "headless_shell"],
    ),
    ("CLERK_BROWSER_TIMEOUT", &["browser", "timeout"]),
    ("CLERK_BROWSER_CAPABILITIES", &["browser", "capabilities"]),
    ("CLERK_MAIL_TRANSPORT", &["mail", "transport"]),
    ("CLERK_MAIL_FROM", &["mail", "from"]),
    ("CLERK_MAIL_OUTBOX", &["mail", "outbox"]),
    ("CLERK_MAIL_SMTP_HOST", &["mail", "smtp", "host"]),
    ("CLERK_MAIL_SMTP_PORT", &["mail", "smtp", "port"]),
    ("CLERK_MAIL_SMTP_TLS", &["mail", "smtp", "tls"]),
    ("CLERK_MAIL_SMTP_USERNAME", &["mail", "smtp", "username"]),
    (
        "CLERK_MAIL_SMTP_PASSWORD_SECRET",
        &["mail", "smtp", "password_secret"],
    ),
    ("CLERK_MAIL_SMTP_TIMEOUT", &["mail", "smtp", "timeout"]),
    (
        "CLERK_MAIL_SMTP_ACCEPT_INVALID_CERTS",
        &["mail", "smtp", "accept_invalid_certs"],
    ),
    ("CLERK_AUDIT_KEY", &["audit", "key"]),
    ("CLERK_AUDIT_CHECKPOINTS", &["audit", "checkpoints"]),
    (
        "CLERK_AUDIT_CHECKPOINT_EVERY",
        &["audit", "checkpoint_every"],
    ),
    (
        "CLERK_AUDIT_CHECKPOINT_AFTER_RUN",
        &["audit", "checkpoint_after_run"],
    ),
    ("CLERK_IMAP_HOST", &["imap", "host"]),
    ("CLERK_IMAP_PORT", &["imap", "port"]),
    ("CLERK_IMAP_TLS", &["imap", "tls"]),
    ("CLERK_IMAP_USERNAME", &["imap", "username"]),
    ("CLERK_IMAP_PASSWORD_SECRET", &["imap", "password_secret"]),
    ("CLERK_IMAP_TIMEOUT", &["imap", "timeout"]),
    (
        "CLERK_IMAP_ACCEPT_INVALID_CERTS",
        &["imap", "accept_invalid_certs"],
    ),
    ("CLERK_IMAP_MAX_MESSAGE_SIZE", &["imap", "max_message_size"]),
];

impl Config {
    /// Loads `<workspace>/clerk.yaml` (if present) and applies `CLERK_*` overrides.
    pub fn load(workspace: &Path) -> anyhow::Result<Config> {
        let path = workspace.join("clerk.yaml");
        let mut value: serde_yaml::Value = if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let v: serde_yaml::Value = serde_yaml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}:{}: {}", path.display(), location(&e), e))?;
            if v.is_null() {
                serde_yaml::Value::Mapping(Default::default())
            } else {
                v
            }
        } else {
            serde_yaml::Value::Mapping(Default::default())
        };
        for (var, keys) in ENV_KEYS {
            if let Ok(raw) = std::env::var(var) {
                let parsed: serde_yaml::Value =
                    serde_yaml::from_str(&raw).unwrap_or(serde_yaml::Value::String(raw.clone()));
                // Strings that YAML reads as something else (e.g. "on") stay strings
                // where the key wants a string; serde sorts it out below.
                set_path(&mut value, keys, parsed);
            }
        }
        let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            anyhow::anyhow!(
                "{}: invalid configuration at `{}`: {} (also check the CLERK_* environment variables)",
                path.display(),
                e.path(),
                e.inner()
            )
        })?;
        if config.max_concurrent_runs == 0 {
            anyhow::bail!(
                "{}: `max_concurrent_runs` must be at least 1",
                path.display()
            );
        }
        Ok(config)
    }

    /// The outbox folder, resolved against the workspace.
    pub fn outbox(&self, workspace: &Path) -> PathBuf {
        workspace.join(&self.mail.outbox)
    }
}

fn location(e: &serde_yaml::Error) -> String {
    e.location()
        .map(|l| format!("{}:{}", l.line(), l.column()))
        .unwrap_or_else(|| "1:1".into())
}

fn set_path(root: &mut serde_yaml::Value, keys: &[&str], value: serde_yaml::Value) {
    let mut cur = root;
    for (i, key) in keys.iter().enumerate() {
        if !cur.is_mapping() {
            *cur = serde_yaml::Value::Mapping(Default::default());
        }
        let Some(map) = cur.as_mapping_mut() else {
            return;
        };
        let k = serde_yaml::Value::String((*key).to_string());
        if i + 1 == keys.len() {
            // Keep strings as strings for string keys (a password-secret named `123`).
            let v = match (&value, key) {
                (
                    serde_yaml::Value::Number(n),
                    &("host" | "from" | "username" | "password_secret" | "outbox" | "database"),
                ) => serde_yaml::Value::String(n.to_string()),
                _ => value,
            };
            map.insert(k, v);
            return;
        }
        cur = map
            .entry(k)
            .or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(dir.path()).unwrap();
        assert_eq!(c.database, "sqlite://.clerk/clerk.db");
        assert_eq!(c.mail.transport, MailTransport::File);
        assert_eq!(c.browser.timeout, Duration::from_secs(10));
    }

    #[test]
    fn bad_keys_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("clerk.yaml"), "mail:\n  transprt: smtp\n").unwrap();
        let e = Config::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("clerk.yaml") && e.contains("transprt"), "{e}");
    }
}
