//! `mail.send`: checks everything, skips a message the journal says was
//! already accepted, delivers through the configured transport, records the
//! acceptance, and tells the audit exactly what went to whom.

use serde_json::{Value, json};

use super::args::SendArgs;
use super::journal;
use super::message::{self, Addresses, Parts, Prepared};
use super::transport::{self, Delivery};
use crate::actions::journal::SentMail;
use crate::actions::{Action, ActionContext, ActionError, ActionResult, DefaultRetry};
use crate::config::{MailTransport, SmtpTls};
use crate::fsutil::sha256_hex;

/// Sends one mail.
pub struct Send;

impl Action for Send {
    type Args = SendArgs;
    const NAME: &'static str = "mail.send";
    const SUMMARY: &'static str =
        "Send a mail with attachments (SMTP, or an .eml file in .clerk/outbox/ by default).";
    const EXAMPLE: &'static str = "- mail.send:\n    to: [permits-team@city.example]\n    subject: \"Renewals entered\"\n    text: \"The list is attached.\"\n    attachments: [out/renewals.xlsx]\n";
    const DEFAULT_RETRY: Option<DefaultRetry> = Some(DefaultRetry {
        attempts: 3,
        delay_ms: 2000,
        backoff: 2.0,
    });
    const RESULT: &'static str = "{ message_id, accepted, transport, already_sent, file }";

    async fn run(ctx: &mut ActionContext<'_>, args: Self::Args) -> ActionResult {
        // 1. Everything that can be checked is checked before anything is sent.
        let addresses =
            Addresses::parse(&args, &ctx.config.mail.from).map_err(ActionError::permanent)?;
        let recipients: Vec<String> = addresses
            .to
            .iter()
            .chain(&addresses.cc)
            .chain(&addresses.bcc)
            .map(|m| m.email.to_string())
            .collect();
        ctx.target(recipients.join(", "));
        let subject = message::clean_subject(&args.subject.0).map_err(ActionError::permanent)?;
        if args.text.is_none() && args.html.is_none() {
            return Err(ActionError::permanent(anyhow::anyhow!(
                "mail.send needs a body: give `text`, `html` or both"
            )));
        }
        let specs: Vec<_> = args
            .attachments
            .as_ref()
            .map(|a| a.specs())
            .unwrap_or_default();
        for spec in &specs {
            ctx.resolve(&spec.path)?;
        }
        let attachments = {
            let workspace = ctx.run.workspace.clone();
            tokio::task::spawn_blocking(move || {
                message::load_attachments(
                    &specs,
                    |p| {
                        let p = std::path::Path::new(p);
                        if p.is_absolute() {
                            p.to_path_buf()
                        } else {
                            workspace.join(p)
                        }
                    },
                    |p| {
                        p.strip_prefix(&workspace)
                            .unwrap_or(p)
                            .display()
                            .to_string()
                    },
                )
            })
            .await
            .map_err(|e| {
                ActionError::permanent(anyhow::anyhow!("the attachment task failed: {e}"))
            })?
            .map_err(ActionError::permanent)?
        };
        let transport_name = match ctx.config.mail.transport {
            MailTransport::File => "file",
            MailTransport::Smtp => "smtp",
        };
        let password = smtp_password(ctx)?;

        // 2. Already accepted in this run's lineage? Then report it, do not resend.
        let lineage = journal::lineage(ctx)
            .await
            .map_err(ActionError::retryable)?;
        let scope = journal::step_scope(&ctx.step.id, ctx.step.item_key.as_deref(), &ctx.step.path);
        let key = journal::key(&lineage, &scope, &recipients);
        let previous = ctx.journal.sent_mail(&key).await.map_err(|e| {
            ActionError::retryable(anyhow::anyhow!(
                "cannot read the mail journal (so not sending, to avoid a duplicate): {e:#}"
            ))
        })?;
        if let Some(prev) = previous {
            ctx.detail("already_sent", true);
            ctx.detail("transport", prev.transport.clone());
            ctx.detail("message_id", prev.message_id.clone());
            ctx.detail("recipients", json!(prev.recipients));
            if !ctx.step.sensitive {
                ctx.detail("subject", subject.clone());
            }
            ctx.detail("first_sent_by_run", prev.run_id.clone());
            ctx.detail(
                "first_sent_at",
                prev.sent_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            );
            ctx.detail("reply", prev.reply.clone());
            ctx.detail("idempotency_key", key);
            tracing::info!(
                step = %ctx.step.path,
                "mail {} was already accepted in run {}; not sending it again",
                prev.message_id,
                prev.run_id
            );
            return Ok(json!({
                "message_id": prev.message_id,
                "accepted": prev.recipients,
                "transport": prev.transport,
                "already_sent": true,
                "file": Value::Null,
            }));
        }

        // 3. Build the message (the id follows from the key: the same logical
        //    message keeps its Message-ID across attempts).
        let message_id = message::message_id(&key[..26], &addresses.from);
        let prepared = message::build(Parts {
            addresses,
            subject: &subject,
            text: args.text.as_ref().map(|t| t.0.as_str()),
            html: args.html.as_ref().map(|t| t.0.as_str()),
            attachments,
            headers: &args.headers,
            message_id,
            run_id: &ctx.run.id,
        })
        .map_err(ActionError::permanent)?;
        let bytes = prepared.message.formatted();
        let message_sha256 = sha256_hex(&bytes);
        describe(ctx, &prepared, transport_name, &message_sha256, bytes.len());
        ctx.detail("idempotency_key", key.clone());

        // 4. Deliver.
        let delivery: Delivery = match ctx.config.mail.transport {
            MailTransport::File => {
                let outbox = ctx.config.outbox(&ctx.run.workspace);
                transport::send_file(&outbox, &prepared).await?
            }
            MailTransport::Smtp => {
                let smtp = &ctx.config.mail.smtp;
                ctx.detail("server", format!("{}:{}", smtp.host, smtp.port));
                ctx.detail(
                    "tls",
                    match smtp.tls {
                        SmtpTls::None => "none",
                        SmtpTls::Starttls => "starttls",
                        SmtpTls::Tls => "tls",
                    },
                );
                if smtp.accept_invalid_certs && smtp.tls != SmtpTls::None {
                    tracing::warn!(
                        "mail.smtp.accept_invalid_certs is on: the certificate of {} is not checked \
                         (only acceptable for a test server)",
                        smtp.host
                    );
                    ctx.detail("accept_invalid_certs", true);
                }
                transport::send_smtp(smtp, password, &prepared).await?
            }
        };

        // 5. Accepted: say so, and remember it.
        let accepted = prepared.recipients();
        let file = delivery.file.as_ref().map(|f| ctx.display_path(f));
        let reply = match &file {
            Some(f) => format!("written to {f}"),
            None => delivery.reply.clone(),
        };
        ctx.detail("reply", reply.clone());
        ctx.detail("accepted", json!(accepted));
        if let Some(f) = &file {
            ctx.detail("file", f.clone());
        }
        let entry = SentMail {
            key,
            run_id: ctx.run.id.clone(),
            step: ctx.step.path.clone(),
            message_id: prepared.message_id.clone(),
            transport: transport_name.into(),
            recipients: accepted.iter().map(|r| crate::secrets::redact(r)).collect(),
            subject: crate::secrets::redact(&prepared.subject),
            message_sha256,
            reply: crate::secrets::redact(&reply),
            sent_at: chrono::Utc::now(),
        };
        if let Err(e) = ctx.journal.record_sent_mail(&entry).await {
            // The message is out; failing the step now would only invite a
            // resend. Say loudly that resend protection is off for it.
            tracing::warn!(
                "mail {} was accepted but could not be recorded in the mail journal: {e}",
                prepared.message_id
            );
            ctx.detail("journal_error", e.to_string());
        }
        Ok(json!({
            "message_id": prepared.message_id,
            "accepted": accepted,
            "transport": transport_name,
            "already_sent": false,
            "file": file,
        }))
    }
}

/// The SMTP password from the secret named in the config (SMTP with a user only).
fn smtp_password(ctx: &ActionContext<'_>) -> Result<Option<String>, ActionError> {
    let mail = &ctx.config.mail;
    if mail.transport != MailTransport::Smtp {
        return Ok(None);
    }
    match (&mail.smtp.username, &mail.smtp.password_secret) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(ActionError::permanent(anyhow::anyhow!(
            "clerk.yaml sets `mail.smtp.password_secret` but no `mail.smtp.username`; set both, or neither"
        ))),
        (Some(_), None) => Err(ActionError::permanent(anyhow::anyhow!(
            "clerk.yaml sets `mail.smtp.username` but no `mail.smtp.password_secret` (the name of the secret holding the password)"
        ))),
        (Some(_), Some(name)) => ctx.secrets.get(name).map(Some).ok_or_else(|| {
            ActionError::permanent(anyhow::anyhow!(
                "the SMTP password secret `{name}` is not set: set CLERK_SECRET_{} or add `{name}` to {}",
                name.to_ascii_uppercase(),
                ctx.secrets.file_path().display()
            ))
        }),
    }
}

/// The audit detail of a message about to be sent (recorded on failure too).
fn describe(
    ctx: &mut ActionContext<'_>,
    p: &Prepared,
    transport: &str,
    message_sha256: &str,
    size: usize,
) {
    let list = |v: &[lettre::message::Mailbox]| -> Value {
        Value::Array(v.iter().map(|m| Value::from(m.to_string())).collect())
    };
    ctx.detail("transport", transport);
    ctx.detail("already_sent", false);
    ctx.detail("from", p.from.to_string());
    ctx.detail("to", list(&p.to));
    ctx.detail("cc", list(&p.cc));
    ctx.detail("bcc", list(&p.bcc));
    if !p.reply_to.is_empty() {
        ctx.detail("reply_to", list(&p.reply_to));
    }
    // A `sensitive: true` step keeps its subject out of the audit too.
    let subject = if ctx.step.sensitive {
        crate::secrets::MASK.to_string()
    } else {
        p.subject.clone()
    };
    ctx.detail("subject", subject);
    ctx.detail("message_id", p.message_id.clone());
    // The text body's hash, or the HTML body's when there is no text.
    if let Some(s) = p.text_sha256.as_ref().or(p.html_sha256.as_ref()) {
        ctx.detail("body_sha256", s.clone());
    }
    if let Some(s) = &p.html_sha256 {
        ctx.detail("html_sha256", s.clone());
    }
    ctx.detail("message_sha256", message_sha256.to_string());
    ctx.detail("size", size as u64);
    ctx.detail("attachments", p.attachments_json());
}
