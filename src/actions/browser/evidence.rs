//! Failure evidence: when a browser step fails, the page as it was (a PNG
//! screenshot and the HTML, secrets masked) is saved under
//! `.clerk/artifacts/<run>/` and recorded with its SHA-256 in the audit event
//! (`clerk audit verify` re-hashes it).
//!
//! Artifact names are never reused within a run: `step-<path>-attempt<N>-…`
//! where N is the step's attempt, raised past every attempt that already
//! left a file — a retried loop item runs its inner steps again from
//! attempt 1, and must not overwrite the evidence of the earlier attempt.

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::Client;

use crate::actions::ActionContext;
use crate::fsutil::{sha256_hex, write_atomic};

/// A file name stem from the step path (`4/item[17]/2` → `step-4-item17-2`)
/// and the attempt: `…-attempt<N>`, N the first attempt number (from the
/// step's own) that no file of the run's artifacts folder uses yet.
pub fn file_stem(ctx: &ActionContext<'_>) -> String {
    let base = step_base(ctx);
    let taken = taken_attempts(&ctx.run.artifacts_dir, &base);
    let mut n = ctx.step.attempt.max(1);
    while taken.contains(&n) {
        n += 1;
    }
    format!("{base}-attempt{n}")
}

/// Attempt numbers already used by files named `<base>-attempt<N>-…`.
fn taken_attempts(dir: &std::path::Path, base: &str) -> std::collections::HashSet<u32> {
    let prefix = format!("{base}-attempt");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Default::default();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let rest = name.strip_prefix(&prefix)?;
            let (n, _) = rest.split_once('-')?;
            n.parse().ok()
        })
        .collect()
}

fn step_base(ctx: &ActionContext<'_>) -> String {
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
    format!("step-{path}")
}

/// Writes an artifact (atomically) and records it in the step's audit note.
/// An existing file is never overwritten: the name gets `-2`, `-3`… instead.
pub fn save(ctx: &mut ActionContext<'_>, name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let mut path = ctx.run.artifacts_dir.join(name);
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) => (s.to_string(), format!(".{e}")),
        None => (name.to_string(), String::new()),
    };
    let mut i = 2;
    while path.exists() {
        path = ctx.run.artifacts_dir.join(format!("{stem}-{i}{ext}"));
        i += 1;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_already_used_are_found() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "step-4-item2-1-attempt1-failure.png",
            "step-4-item2-1-attempt3-failure.html",
            "step-4-item2-10-attempt2-failure.png",
            "step-4-item2-1-attemptx-failure.png",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let taken = taken_attempts(dir.path(), "step-4-item2-1");
        assert_eq!(taken, [1, 3].into_iter().collect());
        assert!(taken_attempts(&dir.path().join("missing"), "step-1").is_empty());
    }
}
