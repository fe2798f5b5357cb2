//! The failure notice a bot sends (`notify.on_failure`) after its last failed
//! attempt: the run id, the failing step and the error, with the run's
//! evidence (screenshots, saved pages) attached.
//!
//! The notice is a `mail.send`, run by the engine
//! ([`Engine::run_action_for`]) for the failed run, exactly as it runs a step.
//! So it gets what every playbook mail gets and nothing is done twice: the
//! transport from clerk.yaml (outbox file or SMTP), address checks, the
//! action's default retry policy for transient failures, resend protection
//! through the mail journal, secrets from the secrets file, and the audit
//! detail (recipients, message id, body and attachment hashes, the server's
//! reply). It is not a run of its own: a generated one-step playbook would
//! add a run row to the bot's history that the bot never asked for. Instead
//! each notice is audited against the failed run — `notify.sent`, or
//! `notify.failed` with the error, and `notify.retrying` for each attempt
//! that will be tried again.

use std::path::Path;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::engine::{ActionForRun, Engine, RunOutcome};

/// The step path the notice runs under (part of its resend-protection key).
pub const STEP: &str = "notify.on_failure";
/// At most this many artifacts are attached; the rest are listed in the text.
const MAX_ATTACHMENTS: usize = 20;
/// At most this many bytes of artifacts are attached, so a run that left many
/// big page dumps still gets its notice past the mail server's size limit.
const MAX_ATTACHMENT_BYTES: u64 = 15 * 1024 * 1024;

/// What the failure mail is about.
pub struct FailureNotice<'a> {
    pub bot: &'a str,
    pub run_id: &'a str,
    pub attempt: i64,
    pub outcome: &'a RunOutcome,
}

/// Which artifacts go with the mail, and which do not (with the reason).
#[derive(Debug, Default, PartialEq)]
pub struct Evidence {
    pub attached: Vec<String>,
    pub left_out: Vec<(String, String)>,
}

/// Picks the run's artifacts to attach: files that still exist, within the
/// count and size limits. A missing file would fail `mail.send` before
/// sending, and a notice without its evidence beats no notice at all.
pub async fn evidence(workspace: &Path, artifacts: &[String]) -> Evidence {
    let mut out = Evidence::default();
    let mut total = 0u64;
    for a in artifacts {
        let path = {
            let p = Path::new(a);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                workspace.join(p)
            }
        };
        let size = match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => {
                out.left_out.push((a.clone(), "not a file".into()));
                continue;
            }
            Err(e) => {
                out.left_out
                    .push((a.clone(), format!("cannot be read: {e}")));
                continue;
            }
        };
        if out.attached.len() >= MAX_ATTACHMENTS {
            out.left_out
                .push((a.clone(), format!("more than {MAX_ATTACHMENTS} files")));
        } else if total + size > MAX_ATTACHMENT_BYTES {
            out.left_out.push((
                a.clone(),
                format!(
                    "over the {} MB attachment limit",
                    MAX_ATTACHMENT_BYTES / 1024 / 1024
                ),
            ));
        } else {
            total += size;
            out.attached.push(a.clone());
        }
    }
    out
}

/// The subject line of the notice.
pub fn subject(n: &FailureNotice) -> String {
    format!(
        "[clerk] bot {} {}: run {}",
        n.bot,
        n.outcome.status.as_str(),
        n.run_id
    )
}

/// The plain-text body of the notice.
pub fn text(n: &FailureNotice, evidence: &Evidence) -> String {
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
    let mut text = format!(
        "The bot `{bot}` did not complete.\n\n\
         run:      {run}\n\
         status:   {status}\n\
         attempt:  {attempt}\n\
         playbook: {playbook}\n\
         step:     {step}\n\
         error:    {error}\n",
        bot = n.bot,
        run = n.run_id,
        status = n.outcome.status.as_str(),
        attempt = n.attempt,
        playbook = n.outcome.playbook,
    );
    if !evidence.attached.is_empty() {
        text.push_str("\nAttached evidence:\n");
        for a in &evidence.attached {
            text.push_str(&format!("  {a}\n"));
        }
    }
    if !evidence.left_out.is_empty() {
        text.push_str("\nNot attached (see the workspace):\n");
        for (a, why) in &evidence.left_out {
            text.push_str(&format!("  {a}: {why}\n"));
        }
    }
    text.push_str(&format!("\nDetails: clerk runs show {}\n", n.run_id));
    text
}

/// The `mail.send` arguments of the notice.
pub fn args(recipients: &[String], n: &FailureNotice, evidence: &Evidence) -> Value {
    json!({
        "to": recipients,
        "subject": subject(n),
        "text": text(n, evidence),
        "attachments": evidence.attached,
    })
}

/// Sends the notice with `mail.send` through the engine (its action
/// catalogue, transport, journal and retry policy) and records `notify.*`
/// events against the failed run. Returns the action's result
/// (`message_id`, `accepted`, ...) or the final error; either way the audit
/// trail already says so.
pub async fn send(
    engine: &Engine,
    workspace: &Path,
    cancel: &CancellationToken,
    recipients: &[String],
    notice: &FailureNotice<'_>,
) -> anyhow::Result<Value> {
    let evidence = evidence(workspace, &notice.outcome.artifacts).await;
    let args = args(recipients, notice, &evidence);
    let mut detail = serde_json::Map::new();
    detail.insert("reason".into(), json!("on_failure"));
    detail.insert("bot".into(), json!(notice.bot));
    detail.insert("run_status".into(), json!(notice.outcome.status.as_str()));
    if !evidence.left_out.is_empty() {
        let left_out: Vec<Value> = evidence
            .left_out
            .iter()
            .map(|(p, why)| json!({ "path": p, "reason": why }))
            .collect();
        detail.insert("not_attached".into(), Value::Array(left_out));
    }
    engine
        .run_action_for(ActionForRun {
            run_id: notice.run_id,
            actor: notice.bot,
            bot: Some(notice.bot),
            playbook: &notice.outcome.playbook,
            workspace,
            step: STEP,
            step_name: format!("failure notice of bot {}", notice.bot),
            action: "mail.send",
            args,
            event_prefix: "notify",
            detail,
            target: recipients.join(", "),
            cancel,
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{RunError, RunStatus};

    fn outcome() -> RunOutcome {
        RunOutcome {
            id: "01RUN".into(),
            status: RunStatus::Failed,
            playbook: "playbooks/renewals.yaml".into(),
            vars: json!({}),
            error: Some(RunError {
                step: "3".into(),
                step_name: Some("Sign in".into()),
                action: Some("browser.click".into()),
                message: "no element with text `Sign in`".into(),
            }),
            artifacts: Vec::new(),
            lineage: "run:01RUN".into(),
            resumed_from: None,
            items: Default::default(),
            follow_up: None,
        }
    }

    #[test]
    fn the_mail_names_the_run_the_step_and_the_error() {
        let outcome = outcome();
        let notice = FailureNotice {
            bot: "renewals-nightly",
            run_id: "01RUN",
            attempt: 2,
            outcome: &outcome,
        };
        let evidence = Evidence {
            attached: vec![".clerk/artifacts/01RUN/3-click.png".into()],
            left_out: vec![(
                ".clerk/artifacts/01RUN/3-click.html".into(),
                "over the 15 MB attachment limit".into(),
            )],
        };
        let a = args(&["rpa@city.example".into()], &notice, &evidence);
        assert_eq!(
            a["subject"],
            "[clerk] bot renewals-nightly failed: run 01RUN"
        );
        assert_eq!(a["to"], json!(["rpa@city.example"]));
        assert_eq!(
            a["attachments"],
            json!([".clerk/artifacts/01RUN/3-click.png"])
        );
        let text = a["text"].as_str().unwrap();
        assert!(
            text.contains("step:     3 \"Sign in\" (browser.click)"),
            "{text}"
        );
        assert!(
            text.contains("error:    no element with text `Sign in`"),
            "{text}"
        );
        assert!(text.contains("attempt:  2"), "{text}");
        assert!(
            text.contains("  .clerk/artifacts/01RUN/3-click.html: over the 15 MB"),
            "{text}"
        );
        // The arguments are valid mail.send arguments.
        let problems = crate::engine::check_action_args("mail.send", &a).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[tokio::test]
    async fn missing_artifacts_and_limits_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.png"), b"png").unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let many: Vec<String> = (0..MAX_ATTACHMENTS + 1)
            .map(|i| {
                let name = format!("f{i}.html");
                std::fs::write(dir.path().join(&name), b"x").unwrap();
                name
            })
            .collect();
        let mut list = vec!["a.png".to_string(), "gone.png".into(), "d".into()];
        list.extend(many);
        let e = evidence(dir.path(), &list).await;
        assert_eq!(e.attached.len(), MAX_ATTACHMENTS);
        assert_eq!(e.attached[0], "a.png");
        let reasons: Vec<&str> = e.left_out.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(reasons[..2], ["gone.png", "d"]);
        assert_eq!(e.left_out.len(), 4, "{:?}", e.left_out);
        assert!(e.left_out[3].1.contains("more than 20 files"));
    }
}
