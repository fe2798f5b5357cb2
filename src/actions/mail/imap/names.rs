//! Safe file names for attachments. A name in a mail is data from a
//! stranger: it may hold path separators, `..`, control characters, a name
//! Windows reserves for devices (`CON`, `LPT1`), or be 300 characters long.
//! What is saved is always one plain file name inside the target folder.

use std::collections::HashSet;

/// Longest name kept, in bytes (ext4 and NTFS allow 255).
const MAX_BYTES: usize = 120;

const RESERVED: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// One attachment name made safe: separators, control characters and
/// characters Windows forbids become `_`; leading dots and trailing dots or
/// spaces go; reserved device names get a `_` prefix; long names are
/// shortened keeping the extension; an empty result is `attachment`.
pub fn sanitize(name: &str) -> String {
    // The whole name is kept, made harmless (`../../etc/passwd` becomes
    // `____etc_passwd`): cutting it to `passwd` would hide what was sent.
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|') {
                '_'
            } else {
                c
            }
        })
        .collect();
    // No `..` anywhere: with the separators gone it is harmless, but a
    // name made only of dots is not a file name.
    while out.contains("..") {
        out = out.replace("..", "_");
    }
    let out = out.trim_start_matches(['.', ' ']);
    let out = out.trim_end_matches(['.', ' ']);
    let mut out = if out.chars().all(|c| c == '_') {
        "attachment".to_string()
    } else {
        out.to_string()
    };
    let stem_upper = out
        .split('.')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_uppercase();
    if RESERVED.contains(&stem_upper.as_str()) {
        out = format!("_{out}");
    }
    shorten(&out, MAX_BYTES)
}

/// Cuts `name` to at most `max` bytes on a char boundary, keeping a short
/// extension.
fn shorten(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() && e.len() <= 10 => (s, format!(".{e}")),
        _ => (name, String::new()),
    };
    let room = max.saturating_sub(ext.len());
    let mut cut = room.min(stem.len());
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{ext}", &stem[..cut])
}

/// Numbers duplicates (`a.xlsx`, `a (2).xlsx`, ...), case-insensitively,
/// against names already `taken` (files present in the folder included).
pub fn unique(name: &str, taken: &mut HashSet<String>) -> String {
    let mut candidate = name.to_string();
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s.to_string(), format!(".{e}")),
        _ => (name.to_string(), String::new()),
    };
    let mut n = 2;
    while taken.contains(&candidate.to_lowercase()) {
        candidate = format!("{stem} ({n}){ext}");
        n += 1;
    }
    taken.insert(candidate.to_lowercase());
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_become_plain_names() {
        assert_eq!(sanitize("../../etc/passwd"), "____etc_passwd");
        assert_eq!(sanitize("..\\..\\boot.ini"), "____boot.ini");
        assert_eq!(sanitize("CON"), "_CON");
        assert_eq!(sanitize("con.txt"), "_con.txt");
        assert_eq!(sanitize("a\u{0}b\r\nc.txt"), "a_b__c.txt");
        assert_eq!(sanitize(".."), "attachment");
        assert_eq!(sanitize(""), "attachment");
        assert_eq!(sanitize(".hidden"), "hidden");
        let long = format!("{}.xlsx", "é".repeat(150));
        let s = sanitize(&long);
        assert!(s.len() <= MAX_BYTES && s.ends_with(".xlsx"), "{s}");
        for hostile in ["../../etc/passwd", "CON", "a/b", "x\u{7}y", &long] {
            let s = sanitize(hostile);
            assert!(!s.contains('/') && !s.contains('\\') && !s.contains(".."));
            assert!(!s.chars().any(char::is_control));
        }
    }

    #[test]
    fn duplicates_are_numbered() {
        let mut taken = HashSet::new();
        assert_eq!(unique("a.xlsx", &mut taken), "a.xlsx");
        assert_eq!(unique("A.xlsx", &mut taken), "A (2).xlsx");
        assert_eq!(unique("a.xlsx", &mut taken), "a (3).xlsx");
        assert_eq!(unique("noext", &mut taken), "noext");
        assert_eq!(unique("noext", &mut taken), "noext (2)");
    }
}
