//! Failure evidence: when a browser step fails, the page as it was (a PNG
//! screenshot and the HTML, secrets masked) is saved under
//! `.clerk/artifacts/<run>/` and recorded with its SHA-256 in the audit event.

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::Client;

use crate::actions::ActionContext;
use crate::fsutil::{sha256_hex, write_atomic};

/// A file name part from a step path (`4/item[17]/2` → `4-item17-2`).
pub fn file_stem(ctx: &ActionContext<'_>) -> String {
    let path: String = ctx
        .step
        .path
        .chars()
        .map(|c| match c {
            '/' => '-',
            c if c.is_ascii_alphanumeric() || c == '-' || c == '_' => c,
            _ => '\u{0}',
        })
        .filter(|c| *c != '\u{0}')
        .collect();
    format!("step-{path}-attempt{}", ctx.step.attempt)
}

/// Writes an artifact (atomically) and records it in the step's audit note.
pub fn save(ctx: &mut ActionContext<'_>, name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let path = ctx.run.artifacts_dir.join(name);
    write_atomic(&path, bytes)?;
    let sha = sha256_hex(bytes);
    ctx.artifact(&path, &sha);
    Ok(path)
}

/// Saves the screenshot and page HTML of a failed step. Returns the
/// screenshot's path as shown in the audit trail. Never fails the caller:
/// evidence is best effort (the browser may be the thing that broke).
pub async fn capture(ctx: &mut ActionContext<'_>, client: &Client) -> Option<String> {
    let stem = file_stem(ctx);
    let limit = Duration::from_secs(5);
    let mut shown = None;
    match tokio::time::timeout(limit, client.screenshot()).await {
        Ok(Ok(png)) => match save(ctx, &format!("{stem}-failure.png"), &png) {
            Ok(p) => shown = Some(ctx.display_path(&p)),
            Err(e) => tracing::warn!("cannot save the failure screenshot: {e:#}"),
        },
        Ok(Err(e)) => tracing::warn!("no failure screenshot: {}", super::wd_message(&e)),
        Err(_) => tracing::warn!("no failure screenshot: the browser did not answer"),
    }
    match tokio::time::timeout(limit, client.source()).await {
        Ok(Ok(html)) => {
            let html = crate::secrets::redact(&html);
            if let Err(e) = save(ctx, &format!("{stem}-failure.html"), html.as_bytes()) {
                tracing::warn!("cannot save the failure page HTML: {e:#}");
            }
        }
        Ok(Err(e)) => tracing::warn!("no failure page HTML: {}", super::wd_message(&e)),
        Err(_) => tracing::warn!("no failure page HTML: the browser did not answer"),
    }
    if let Ok(Ok(url)) = tokio::time::timeout(limit, client.current_url()).await {
        ctx.detail("url", url.to_string());
    }
    shown
}
