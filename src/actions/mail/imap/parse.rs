//! A fetched message as playbooks see it: decoded headers (encoded words,
//! any charset), text and HTML bodies decoded to UTF-8, and attachments
//! saved under safe names — written to a temporary file and renamed, so a
//! folder never holds half an attachment.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use mail_parser::{Address, MessageParser, MimeHeaders as _};
use serde_json::{Value, json};

use super::names;
use crate::fsutil::{sha256_hex, write_atomic};

/// The parts of a message used for filters and for the audit.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub message_id: Option<String>,
    /// Addresses only (`jan@city.example`).
    pub from: Vec<String>,
    /// `Name <address>` as written.
    pub from_display: Vec<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub date: Option<String>,
}

fn addresses(a: Option<&Address>) -> (Vec<String>, Vec<String>) {
    let mut plain = Vec::new();
    let mut shown = Vec::new();
    if let Some(a) = a {
        for addr in a.iter() {
            let email = addr.address().unwrap_or_default().to_string();
            let display = match addr.name() {
                Some(n) if !n.is_empty() => format!("{n} <{email}>"),
                _ => email.clone(),
            };
            plain.push(email);
            shown.push(display);
        }
    }
    (plain, shown)
}

/// Reads the headers of a message (or a whole message).
pub fn summary(raw: &[u8]) -> Summary {
    let Some(m) = MessageParser::default().parse(raw) else {
        return Summary::default();
    };
    let (from, from_display) = addresses(m.from());
    let (_, to) = addresses(m.to());
    let (_, cc) = addresses(m.cc());
    Summary {
        message_id: m.message_id().map(|s| format!("<{s}>")),
        from,
        from_display,
        to,
        cc,
        subject: m.subject().unwrap_or_default().to_string(),
        date: m.date().map(|d| d.to_rfc3339()),
    }
}

/// One saved attachment.
#[derive(Debug, Clone)]
pub struct Saved {
    /// The name as the sender wrote it (decoded).
    pub original_name: String,
    /// The safe name it was saved under.
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    pub content_type: String,
}

/// A whole message, decoded.
pub struct Parsed {
    pub summary: Summary,
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<Saved>,
}

/// A whole message: its summary, bodies, and attachments (saved into
/// `save_to` when given). `shown` turns a path into its workspace form.
pub fn full(
    raw: &[u8],
    save_to: Option<&Path>,
    taken: &mut HashSet<String>,
) -> anyhow::Result<Parsed> {
    let m = MessageParser::default()
        .parse(raw)
        .ok_or_else(|| anyhow::anyhow!("the message cannot be read as MIME"))?;
    let sum = summary(raw);
    let text = m.body_text(0).map(|t| t.into_owned());
    let html = m.body_html(0).map(|t| t.into_owned());
    let mut saved = Vec::new();
    for (i, part) in m.attachments().enumerate() {
        let original = part
            .attachment_name()
            .map(str::to_string)
            .unwrap_or_else(|| format!("attachment-{}", i + 1));
        let content_type = part
            .content_type()
            .map(|c| match c.subtype() {
                Some(s) => format!("{}/{}", c.ctype(), s),
                None => c.ctype().to_string(),
            })
            .unwrap_or_else(|| "application/octet-stream".into());
        let bytes = part.contents();
        let name = names::unique(&names::sanitize(&original), taken);
        let sha = sha256_hex(bytes);
        let path = match save_to {
            Some(dir) => {
                let p = dir.join(&name);
                // The name has no separators; check anyway that it stays inside.
                if p.parent() != Some(dir) {
                    anyhow::bail!(
                        "attachment name `{}` escapes the folder",
                        original.escape_debug()
                    );
                }
                write_atomic(&p, bytes)?;
                p
            }
            None => PathBuf::new(),
        };
        saved.push(Saved {
            original_name: original,
            name,
            path,
            size: bytes.len() as u64,
            sha256: sha,
            content_type,
        });
    }
    Ok(Parsed {
        summary: sum,
        text,
        html,
        attachments: saved,
    })
}

/// Names already used in `dir` (lower case), so a second fetch into the
/// same folder numbers its files instead of replacing the first ones.
pub fn existing_names(dir: &Path) -> HashSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_lowercase())
                .collect()
        })
        .unwrap_or_default()
}

pub fn summary_json(s: &Summary) -> Value {
    json!({
        "message_id": s.message_id,
        "from": s.from_display.first().cloned().unwrap_or_default(),
        "from_address": s.from.first().cloned().unwrap_or_default(),
        "to": s.to,
        "cc": s.cc,
        "subject": s.subject,
        "date": s.date,
    })
}
