//! The failure mail a bot sends (`notify.on_failure`) after its last failed
//! attempt: the run id, the failing step and the error, through the
//! configured transport — an `.eml` file in the outbox (default) or SMTP.
//!
//! The message is built with lettre's builder; the file transport writes the
//! formatted message atomically (temp file + rename), so a reader of the
//! outbox never sees half a mail.

use std::path::Path;

use anyhow::Context;
use lettre::message::{Mailbox, Message, header::ContentType};

use crate::config::{Config, MailTransport, SmtpTls};
use crate::engine::RunOutcome;
use crate::secrets::{Secrets, redact};

/// What the failure mail says.
pub struct FailureNotice<'a> {
    pub bot: &'a str,
    pub run_id: &'a str,
    pub attempt: i64,
    pub outcome: &'a RunOutcome,
}

/// Where the notice went: the outbox file, or the SMTP server's reply.
#[derive(Debug, Clone)]
pub struct Sent {
    pub transport: &'static str,
    pub detail: String,
}

/// Builds the failure mail to `recipients`.
pub fn build(config: &Config, recipients: &[String], n: &FailureNotice) -> anyhow::Result<Message> {
    let from: Mailbox = config
        .mail
        .from
        .parse()
        .with_context(|| format!("mail.from `{}` is not a mail address", config.mail.from))?;
    let status = n.outcome.status.as_str();
    let mut b = Message::builder()
        .from(from)
        .subject(format!("[clerk] bot {} {status}: run {}", n.bot, n.run_id))
        .message_id(Some(format!("<{}.failure@clerk>", n.run_id)));
    for r in recipients {
        let to: Mailbox = r
            .parse()
            .with_context(|| format!("`{r}` is not a mail address"))?;
        b = b.to(to);
    }
    let (step, error) = match &n.outcome.error {
        Some(e) => {
            let step = match (&e.step_name, &e.action) {
                (Some(name), Some(a)) => format!("{} \"{name}\" ({a})", e.step),
                (Some(name), None) => format!("{} \"{name}\"", e.step),
                (None, Some(a)) => format!("{} ({a})", e.step),
                (None, None) if e.step.is_empty() => "-".to_string(),
                (None, None) => e.step.clone(),
            };
            (step, e.message.clone())
        }
        None => ("-".into(), "-".into()),
    };
    let text = format!(
        "The bot `{bot}` did not complete.\n\n\
         run:      {run}\n\
         status:   {status}\n\
         attempt:  {attempt}\n\
         playbook: {playbook}\n\
         step:     {step}\n\
         error:    {error}\n\n\
         Details: clerk runs show {run}\n",
        bot = n.bot,
        run = n.run_id,
        attempt = n.attempt,
        playbook = n.outcome.playbook,
    );
    b.header(ContentType::TEXT_PLAIN)
        .body(redact(&text))
        .context("cannot build the failure mail")
}

/// Sends the failure mail through the configured transport.
pub async fn send(
    config: &Config,
    workspace: &Path,
    secrets: &Secrets,
    recipients: &[String],
    notice: &FailureNotice<'_>,
) -> anyhow::Result<Sent> {
    let message = build(config, recipients, notice)?;
    match config.mail.transport {
        MailTransport::File => {
            let outbox = config.outbox(workspace);
            let path = outbox.join(format!("{}-failure.eml", notice.run_id));
            let bytes = message.formatted();
            let p = path.clone();
            tokio::task::spawn_blocking(move || crate::fsutil::write_atomic(&p, &bytes))
                .await
                .context("the outbox writer stopped")??;
            Ok(Sent {
                transport: "file",
                detail: path.display().to_string(),
            })
        }
        MailTransport::Smtp => {
            use lettre::transport::smtp::authentication::Credentials;
            use lettre::transport::smtp::client::{Tls, TlsParameters};
            use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
            let smtp = &config.mail.smtp;
            let tls = || {
                TlsParameters::builder(smtp.host.clone())
                    .dangerous_accept_invalid_certs(smtp.accept_invalid_certs)
                    .build()
                    .context("cannot set up TLS for SMTP")
            };
            let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
                .port(smtp.port)
                .timeout(Some(smtp.timeout));
            b = match smtp.tls {
                SmtpTls::None => b.tls(Tls::None),
                SmtpTls::Starttls => b.tls(Tls::Required(tls()?)),
                SmtpTls::Tls => b.tls(Tls::Wrapper(tls()?)),
            };
            if let Some(user) = &smtp.username {
                let password = match &smtp.password_secret {
                    Some(name) => secrets.get(name).with_context(|| {
                        format!("secret `{name}` (mail.smtp.password_secret) is not set")
                    })?,
                    None => String::new(),
                };
                b = b.credentials(Credentials::new(user.clone(), password));
            }
            let reply = b
                .build()
                .send(message)
                .await
                .map_err(|e| anyhow::anyhow!(redact(&e.to_string())))
                .with_context(|| {
                    format!(
                        "cannot send the failure mail via {}:{}",
                        smtp.host, smtp.port
                    )
                })?;
            Ok(Sent {
                transport: "smtp",
                detail: reply.message().collect::<Vec<_>>().join(" "),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{RunError, RunStatus};

    #[test]
    fn the_mail_names_the_run_the_step_and_the_error() {
        let outcome = RunOutcome {
            id: "01RUN".into(),
            status: RunStatus::Failed,
            playbook: "playbooks/renewals.yaml".into(),
            vars: serde_json::json!({}),
            error: Some(RunError {
                step: "3".into(),
                step_name: Some("Sign in".into()),
                action: Some("browser.click".into()),
                message: "no element with text `Sign in`".into(),
            }),
            artifacts: Vec::new(),
        };
        let notice = FailureNotice {
            bot: "renewals-nightly",
            run_id: "01RUN",
            attempt: 2,
            outcome: &outcome,
        };
        let config = Config::default();
        let m = build(&config, &["rpa@city.example".into()], &notice).unwrap();
        let text = String::from_utf8(m.formatted()).unwrap();
        assert!(text.contains("To: rpa@city.example"), "{text}");
        assert!(
            text.contains("Subject: [clerk] bot renewals-nightly failed: run 01RUN"),
            "{text}"
        );
        assert!(
            text.contains("step:     3 \"Sign in\" (browser.click)"),
            "{text}"
        );
        assert!(
            text.contains("error:    no element with text `Sign in`"),
            "{text}"
        );
        assert!(text.contains("attempt:  2"), "{text}");
        assert!(build(&config, &["not an address".into()], &notice).is_err());
    }
}
