//! Builds the message of a `mail.send` step: every address checked, every
//! attachment read and hashed, the MIME tree assembled — all before a
//! transport is touched, so a bad address or a missing file never leaves a
//! half-sent mail behind.

use std::path::Path;

use lettre::Address;
use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Body, Mailbox, MultiPart, SinglePart};
use serde_json::{Value, json};

use super::args::{AttachmentSpec, Recipients, SendArgs};
use crate::fsutil::sha256_hex;

/// A message ready for a transport, with everything the audit wants to know.
pub struct Prepared {
    pub message: lettre::Message,
    /// `<...>` included.
    pub message_id: String,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
    pub reply_to: Vec<Mailbox>,
    pub subject: String,
    pub text_sha256: Option<String>,
    pub html_sha256: Option<String>,
    pub attachments: Vec<AttachmentInfo>,
}

/// What the audit records of one attachment.
pub struct AttachmentInfo {
    pub name: String,
    /// As shown in the audit: relative to the workspace when inside it.
    pub path: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
}

impl Prepared {
    /// Every envelope recipient (to, cc and bcc), as plain addresses.
    pub fn recipients(&self) -> Vec<String> {
        self.to
            .iter()
            .chain(&self.cc)
            .chain(&self.bcc)
            .map(|m| m.email.to_string())
            .collect()
    }

    pub fn attachments_json(&self) -> Value {
        Value::Array(
            self.attachments
                .iter()
                .map(|a| {
                    json!({
                        "name": a.name,
                        "path": a.path,
                        "content_type": a.content_type,
                        "size": a.size,
                        "sha256": a.sha256,
                    })
                })
                .collect(),
        )
    }
}

/// The addresses of a message, checked, before anything else is done.
pub struct Addresses {
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
    pub reply_to: Vec<Mailbox>,
}

impl Addresses {
    pub fn parse(args: &SendArgs, default_from: &str) -> anyhow::Result<Addresses> {
        let (from_text, from_field) = match args.from.as_deref() {
            Some(f) => (f, "from"),
            None => (default_from, "mail.from (clerk.yaml or CLERK_MAIL_FROM)"),
        };
        let mut from = parse_list(from_field, &Recipients(vec![from_text.to_string()]))?;
        if from.len() != 1 {
            anyhow::bail!(
                "`from` must be exactly one address, got {} (`{from_text}`)",
                from.len()
            );
        }
        let from = from.remove(0);
        let list = |name: &str, v: &Option<Recipients>| match v {
            Some(v) => parse_list(name, v),
            None => Ok(Vec::new()),
        };
        let a = Addresses {
            from,
            to: list("to", &args.to)?,
            cc: list("cc", &args.cc)?,
            bcc: list("bcc", &args.bcc)?,
            reply_to: list("reply_to", &args.reply_to)?,
        };
        if a.to.is_empty() && a.cc.is_empty() && a.bcc.is_empty() {
            anyhow::bail!("no recipient: give at least one address in `to`, `cc` or `bcc`");
        }
        Ok(a)
    }
}

/// Splits and checks a recipient field: a list, each item possibly holding
/// several addresses separated by commas or semicolons.
pub fn parse_list(field: &str, value: &Recipients) -> anyhow::Result<Vec<Mailbox>> {
    let mut out = Vec::new();
    for item in &value.0 {
        for piece in split_addresses(item) {
            let mailbox = parse_mailbox(&piece).ok_or_else(|| {
                anyhow::anyhow!(
                    "`{field}`: `{}` is not a valid mail address",
                    visible(&piece)
                )
            })?;
            out.push(mailbox);
        }
    }
    Ok(out)
}

/// Text for an error message, with control characters shown as escapes (a
/// line break inside a bad address must not break the message in two).
fn visible(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Splits `a@x, "Doe, Jane" <j@x>; b@x` at separators outside quotes and `<>`.
fn split_addresses(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut angle, mut escaped) = (false, false, false);
    for c in text.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => {
                escaped = true;
                cur.push(c);
            }
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            '<' if !quoted => {
                angle = true;
                cur.push(c);
            }
            '>' if !quoted => {
                angle = false;
                cur.push(c);
            }
            ',' | ';' if !quoted && !angle => {
                out.push(std::mem::take(&mut cur));
            }
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `a@x`, `<a@x>`, `Name <a@x>` or `"Doe, Jane" <a@x>`; strict: nothing else.
fn parse_mailbox(piece: &str) -> Option<Mailbox> {
    let piece = piece.trim();
    let Some(open) = piece.rfind('<') else {
        return piece.parse::<Address>().ok().map(|a| Mailbox::new(None, a));
    };
    let inner = piece[open + 1..].strip_suffix('>')?;
    let address: Address = inner.trim().parse().ok()?;
    let name = piece[..open].trim();
    let name = match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(q) => q.replace("\\\"", "\"").replace("\\\\", "\\"),
        None if name.contains(['"', '<', '>']) => return None,
        None => name.to_string(),
    };
    // A line break in a name would be a header injection (lettre refuses to
    // print it at all); no control character belongs in a display name.
    if name.chars().any(char::is_control) {
        return None;
    }
    Some(Mailbox::new((!name.is_empty()).then_some(name), address))
}

/// A subject on one line: line breaks (a YAML `|` block ends with one) become
/// spaces; any other control character is refused.
pub fn clean_subject(subject: &str) -> anyhow::Result<String> {
    let one_line = subject
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(c) = one_line.chars().find(|c| c.is_control() && *c != '\t') {
        anyhow::bail!(
            "`subject` contains the control character U+{:04X}; remove it",
            u32::from(c)
        );
    }
    Ok(one_line)
}

/// Headers clerk writes itself; `headers:` may not set them.
const RESERVED_HEADERS: &[&str] = &[
    "from",
    "sender",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
];

fn check_header(name: &str, value: &str) -> anyhow::Result<HeaderValue> {
    if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        anyhow::bail!("`headers`: `{name}` is not a valid header name");
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        anyhow::bail!(
            "`headers`: `{name}` is set by mail.send itself; use its own argument instead"
        );
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        anyhow::bail!(
            "`headers`: the value of `{name}` contains a line break or control character"
        );
    }
    let header = HeaderName::new_from_ascii(name.to_string())
        .map_err(|_| anyhow::anyhow!("`headers`: `{name}` is not a valid header name"))?;
    Ok(HeaderValue::new(header, value.to_string()))
}

/// The MIME type for a file name, from its extension.
pub fn content_type_for(name: &str) -> &'static str {
    let ext = Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "xlsm" => "application/vnd.ms-excel.sheet.macroEnabled.12",
        "xlsb" => "application/vnd.ms-excel.sheet.binary.macroEnabled.12",
        "xls" => "application/vnd.ms-excel",
        "ods" => "application/vnd.oasis.opendocument.spreadsheet",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "doc" => "application/msword",
        "odt" => "application/vnd.oasis.opendocument.text",
        "pdf" => "application/pdf",
        "csv" => "text/csv",
        "tsv" => "text/tab-separated-values",
        "txt" | "log" => "text/plain",
        "md" => "text/markdown",
        "html" | "htm" => "text/html",
        "json" | "jsonl" => "application/json",
        "xml" => "application/xml",
        "yaml" | "yml" => "application/yaml",
        "eml" => "message/rfc822",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        _ => "application/octet-stream",
    }
}

/// A loaded attachment: bytes plus what the audit records.
pub struct LoadedAttachment {
    pub info: AttachmentInfo,
    pub bytes: Vec<u8>,
}

/// Reads every attachment (all of them, before anything is sent).
pub fn load_attachments(
    specs: &[AttachmentSpec],
    resolve: impl Fn(&str) -> std::path::PathBuf,
    display: impl Fn(&Path) -> String,
) -> anyhow::Result<Vec<LoadedAttachment>> {
    let mut out = Vec::new();
    for spec in specs {
        let path = resolve(&spec.path);
        let shown = display(&path);
        let meta = std::fs::metadata(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                anyhow::anyhow!("attachment {shown} does not exist; nothing was sent")
            }
            _ => anyhow::anyhow!("cannot read attachment {shown}: {e}; nothing was sent"),
        })?;
        if !meta.is_file() {
            anyhow::bail!("attachment {shown} is not a file; nothing was sent");
        }
        let bytes = std::fs::read(&path).map_err(|e| {
            anyhow::anyhow!("cannot read attachment {shown}: {e}; nothing was sent")
        })?;
        let name = match &spec.name {
            Some(n) if n.chars().any(char::is_control) => {
                anyhow::bail!("attachment {shown}: the `name` contains a control character");
            }
            Some(n) if !n.trim().is_empty() => n.trim().to_string(),
            // File names may hold anything but `/` and NUL; a line break must
            // not reach a header.
            _ => path
                .file_name()
                .map(|n| {
                    n.to_string_lossy()
                        .chars()
                        .map(|c| if c.is_control() { '_' } else { c })
                        .collect()
                })
                .unwrap_or_else(|| "attachment".into()),
        };
        let content_type = match &spec.content_type {
            Some(ct) => {
                ContentType::parse(ct).map_err(|_| {
                    anyhow::anyhow!("attachment {shown}: `{ct}` is not a valid content type")
                })?;
                ct.clone()
            }
            None => content_type_for(&name).to_string(),
        };
        out.push(LoadedAttachment {
            info: AttachmentInfo {
                name,
                path: shown,
                content_type,
                size: bytes.len() as u64,
                sha256: sha256_hex(&bytes),
            },
            bytes,
        });
    }
    Ok(out)
}

/// Everything needed to assemble one message.
pub struct Parts<'a> {
    pub addresses: Addresses,
    pub subject: &'a str,
    pub text: Option<&'a str>,
    pub html: Option<&'a str>,
    pub attachments: Vec<LoadedAttachment>,
    pub headers: &'a std::collections::BTreeMap<String, super::args::Text>,
    pub message_id: String,
    pub run_id: &'a str,
}

/// Assembles the MIME message.
pub fn build(parts: Parts<'_>) -> anyhow::Result<Prepared> {
    let Parts {
        addresses,
        subject,
        text,
        html,
        attachments,
        headers,
        message_id,
        run_id,
    } = parts;
    let mut builder = lettre::Message::builder()
        .from(addresses.from.clone())
        .subject(subject)
        .message_id(Some(message_id.clone()));
    for m in &addresses.to {
        builder = builder.to(m.clone());
    }
    for m in &addresses.cc {
        builder = builder.cc(m.clone());
    }
    for m in &addresses.bcc {
        builder = builder.bcc(m.clone());
    }
    for m in &addresses.reply_to {
        builder = builder.reply_to(m.clone());
    }
    // Mail from a bot says so (RFC 3834), so that out-of-office replies stay away,
    // and names the run that sent it.
    builder = builder.raw_header(HeaderValue::new(
        HeaderName::new_from_ascii_str("Auto-Submitted"),
        "auto-generated".into(),
    ));
    builder = builder.raw_header(HeaderValue::new(
        HeaderName::new_from_ascii_str("X-Clerk-Run"),
        run_id.to_string(),
    ));
    for (name, value) in headers {
        builder = builder.raw_header(check_header(name, &value.0)?);
    }

    let body: Option<BodyPart> = match (text, html) {
        (Some(t), Some(h)) => Some(BodyPart::Multi(MultiPart::alternative_plain_html(
            t.to_string(),
            h.to_string(),
        ))),
        (Some(t), None) => Some(BodyPart::Single(SinglePart::plain(t.to_string()))),
        (None, Some(h)) => Some(BodyPart::Single(SinglePart::html(h.to_string()))),
        (None, None) => None,
    };
    let mut infos = Vec::new();
    let mut attachment_parts = Vec::new();
    for a in attachments {
        let ct = ContentType::parse(&a.info.content_type).map_err(|_| {
            anyhow::anyhow!(
                "attachment {}: `{}` is not a valid content type",
                a.info.path,
                a.info.content_type
            )
        })?;
        // Always base64, text files included: 7bit would let line endings be
        // rewritten in transit; this way the file arrives byte for byte.
        let body = Body::new_with_encoding(a.bytes, ContentTransferEncoding::Base64)
            .map_err(|_| anyhow::anyhow!("cannot encode attachment {}", a.info.path))?;
        attachment_parts.push(Attachment::new(a.info.name.clone()).body(body, ct));
        infos.push(a.info);
    }
    let message = if attachment_parts.is_empty() {
        match body {
            Some(BodyPart::Multi(m)) => builder.multipart(m),
            Some(BodyPart::Single(s)) => builder.singlepart(s),
            None => builder.singlepart(SinglePart::plain(String::new())),
        }
    } else {
        let mut mixed = MultiPart::mixed().build();
        mixed = match body {
            Some(BodyPart::Multi(m)) => mixed.multipart(m),
            Some(BodyPart::Single(s)) => mixed.singlepart(s),
            None => mixed,
        };
        for p in attachment_parts {
            mixed = mixed.singlepart(p);
        }
        builder.multipart(mixed)
    }
    .map_err(|e| anyhow::anyhow!("cannot build the message: {e}"))?;

    Ok(Prepared {
        message,
        message_id,
        from: addresses.from,
        to: addresses.to,
        cc: addresses.cc,
        bcc: addresses.bcc,
        reply_to: addresses.reply_to,
        subject: subject.to_string(),
        text_sha256: text.map(|t| sha256_hex(t.as_bytes())),
        html_sha256: html.map(|h| sha256_hex(h.as_bytes())),
        attachments: infos,
    })
}

/// The body of the message: one part, or text and HTML as alternatives.
enum BodyPart {
    Single(SinglePart),
    Multi(MultiPart),
}

/// A Message-ID under the sender's domain (or `clerk.invalid` for an address
/// literal), derived from `seed` so that the same logical message keeps its id.
pub fn message_id(seed: &str, from: &Mailbox) -> String {
    let domain = from.email.domain();
    let domain = if domain.starts_with('[') || domain.is_empty() {
        "clerk.invalid"
    } else {
        domain
    };
    format!("<clerk.{seed}@{domain}>")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> anyhow::Result<Vec<String>> {
        parse_list("to", &Recipients(vec![s.into()]))
            .map(|v| v.iter().map(|m| m.to_string()).collect())
    }

    #[test]
    fn addresses_split_and_parse() {
        assert_eq!(
            list("a@x.org, \"Doe, Jane\" <j@x.org>; Bob <b@x.org>").unwrap(),
            vec!["a@x.org", "\"Doe, Jane\" <j@x.org>", "Bob <b@x.org>"]
        );
        let e = list("a@x.org, not-an-address").unwrap_err().to_string();
        assert!(e.contains("`not-an-address`") && e.contains("`to`"), "{e}");
        assert!(list("a@x.org junk").is_err());
        assert!(list("Name <a@x.org").is_err());
        assert!(list("bob@").is_err());
        assert!(list("\"Evil\r\nBcc: x@y.org\" <a@x.org>").is_err());
        let m = parse_mailbox("Jérôme Dupont <j@x.org>").unwrap();
        assert_eq!(m.name.as_deref(), Some("Jérôme Dupont"));
    }

    /// Odd names, subjects, header values and file names never panic inside
    /// lettre: each is either refused with an error or encoded.
    #[test]
    fn odd_text_never_panics() {
        const PIECES: &[&str] = &[
            "a",
            "é",
            "—",
            "\"",
            "\\",
            "<",
            ">",
            ",",
            ";",
            "@",
            " ",
            "\t",
            "\r",
            "\n",
            "\r\n",
            "\u{0}",
            "\u{7}",
            "\u{1b}",
            "\u{200d}",
            "\u{202e}",
            "=?utf-8?b?",
            "?=",
            ":",
            "(",
            ")",
            "x@y.org",
            "日本",
            "\u{fffd}",
            "%",
            "'",
            "*",
            "a@b",
            "[",
            "]",
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut built_ok = 0;
        for _ in 0..3000 {
            let mut word = |max: usize| -> String {
                (0..next(max)).map(|_| PIECES[next(PIECES.len())]).collect()
            };
            let to = format!(
                "\"{}\" <a@x.org>, {} <b@x.org>, {}",
                word(6),
                word(4),
                word(3)
            );
            let subject = word(8);
            let header = word(6);
            let file_name = word(5);
            let text = word(10);
            let args = SendArgs {
                from: Some(format!("{} <c@x.org>", word(4))),
                to: Some(Recipients(vec![to])),
                cc: None,
                bcc: None,
                reply_to: None,
                subject: super::super::args::Text(subject.clone()),
                text: None,
                html: None,
                attachments: None,
                headers: Default::default(),
            };
            let Ok(addresses) = Addresses::parse(&args, "d@x.org") else {
                continue;
            };
            let Ok(subject) = clean_subject(&subject) else {
                continue;
            };
            let mut headers = std::collections::BTreeMap::new();
            headers.insert("X-Odd".to_string(), super::super::args::Text(header));
            let name: String = file_name
                .chars()
                .map(|c| if c.is_control() { '_' } else { c })
                .collect();
            let attachment = LoadedAttachment {
                info: AttachmentInfo {
                    name: if name.trim().is_empty() {
                        "f".into()
                    } else {
                        name
                    },
                    path: "f".into(),
                    content_type: "text/plain".into(),
                    size: 1,
                    sha256: String::new(),
                },
                bytes: b"x".to_vec(),
            };
            let built = build(Parts {
                addresses,
                subject: &subject,
                text: Some(&text),
                html: None,
                attachments: vec![attachment],
                headers: &headers,
                message_id: "<id@x.org>".into(),
                run_id: "run",
            });
            if let Ok(p) = built {
                built_ok += 1;
                let bytes = p.message.formatted();
                // No header injection: every header line is `Name: value` or a fold.
                let head = String::from_utf8_lossy(&bytes);
                let head = head.split("\r\n\r\n").next().unwrap_or_default();
                for line in head.split("\r\n") {
                    assert!(
                        line.starts_with([' ', '\t']) || line.contains(": "),
                        "bad header line {line:?} in\n{head}"
                    );
                    assert!(!line.starts_with("Bcc"), "{head}");
                }
            }
        }
        // The generator must reach lettre often enough for this to mean something.
        assert!(built_ok > 150, "only {built_ok} messages were built");
    }

    #[test]
    fn subjects_are_one_line() {
        assert_eq!(clean_subject("Report\n").unwrap(), "Report");
        assert_eq!(clean_subject("a\r\n  b").unwrap(), "a b");
        assert!(clean_subject("a\u{7}").is_err());
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type_for("a.CSV"), "text/csv");
        assert_eq!(
            content_type_for("out/r.xlsx"),
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        );
        assert_eq!(content_type_for("x"), "application/octet-stream");
    }

    #[test]
    fn reserved_and_bad_headers_are_refused() {
        assert!(check_header("Subject", "x").is_err());
        assert!(check_header("X-Bad Name", "x").is_err());
        assert!(check_header("X-Ok", "a\r\nBcc: evil@x.org").is_err());
        assert!(check_header("X-Ok", "fine").is_ok());
    }
}
