//! Secrets and the redactor that keeps them out of everything clerk writes.
//!
//! `secrets.NAME` resolves from `CLERK_SECRET_NAME` or the workspace file
//! `.clerk/secrets.yaml` (a flat map, refused if group- or world-readable).
//! Every value that was resolved — and every value *derived* from a secret by a
//! template (the engine registers those too) — joins a process-wide list, and
//! [`redact`] replaces each occurrence, with its upper- and lower-case forms,
//! by `***` in audit events, logs, errors, CLI output and exports.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};

/// What replaces a secret.
pub const MASK: &str = "***";

/// Shorter values are not masked: masking "a" everywhere would destroy the output
/// and such a value protects nothing anyway.
const MIN_SECRET_LEN: usize = 3;

fn masked_values() -> &'static RwLock<Vec<String>> {
    static VALUES: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    VALUES.get_or_init(|| RwLock::new(Vec::new()))
}

/// Adds a value (and its case variants) to the set that is masked everywhere.
pub fn register(value: &str) {
    let value = value.trim();
    if value.chars().count() < MIN_SECRET_LEN {
        return;
    }
    let Ok(mut list) = masked_values().write() else {
        return;
    };
    for form in [
        value.to_string(),
        value.to_uppercase(),
        value.to_lowercase(),
    ] {
        if !list.contains(&form) {
            list.push(form);
        }
    }
    // Longest first, so a secret containing another is masked whole.
    list.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// Registers every string inside a JSON value.
pub fn register_json(value: &serde_json::Value) {
    match value {
        serde_json::Value::String(s) => register(s),
        serde_json::Value::Array(items) => items.iter().for_each(register_json),
        serde_json::Value::Object(map) => map.values().for_each(register_json),
        serde_json::Value::Number(n) => register(&n.to_string()),
        _ => {}
    }
}

/// Replaces every known secret value in `text` by `***`.
pub fn redact(text: &str) -> String {
    let Ok(list) = masked_values().read() else {
        return text.to_string();
    };
    if list.is_empty() {
        return text.to_string();
    }
    let mut out = text.to_string();
    for secret in list.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), MASK);
        }
    }
    out
}

/// Redacts every string inside a JSON value, in place (keys included).
pub fn redact_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => {
            let r = redact(s);
            if r != *s {
                *s = r;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_json),
        serde_json::Value::Object(map) => {
            let entries: Vec<(String, serde_json::Value)> =
                std::mem::take(map).into_iter().collect();
            for (k, mut v) in entries {
                redact_json(&mut v);
                map.insert(redact(&k), v);
            }
        }
        serde_json::Value::Number(n) => {
            let text = n.to_string();
            if redact(&text) != text {
                *value = serde_json::Value::String(MASK.into());
            }
        }
        _ => {}
    }
}

/// Problems with the secret sources.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "refusing to read {path}: it is readable by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    InsecureFile { path: String, mode: u32 },
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
}

/// The secret sources of one workspace.
#[derive(Debug)]
pub struct Secrets {
    file_path: PathBuf,
    file: HashMap<String, String>,
}

impl Secrets {
    /// Loads `.clerk/secrets.yaml` if it exists (checking its permissions).
    pub fn load(workspace: &Path) -> Result<Secrets, SecretError> {
        let file_path = workspace.join(".clerk").join("secrets.yaml");
        let mut file = HashMap::new();
        if file_path.exists() {
            let shown = file_path.display().to_string();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let meta = std::fs::metadata(&file_path).map_err(|e| SecretError::Unreadable {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(SecretError::InsecureFile { path: shown, mode });
                }
            }
            let text =
                std::fs::read_to_string(&file_path).map_err(|e| SecretError::Unreadable {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
            let parsed: HashMap<String, serde_yaml::Value> =
                serde_yaml::from_str(&text).map_err(|e| SecretError::Unreadable {
                    path: shown.clone(),
                    // serde_yaml quotes the offending text; never show secret material.
                    reason: match e.location() {
                        Some(l) => format!(
                            "not a flat map of names to values (line {}, column {})",
                            l.line(),
                            l.column()
                        ),
                        None => "not a flat map of names to values".into(),
                    },
                })?;
            for (k, v) in parsed {
                let value = match v {
                    serde_yaml::Value::String(s) => s,
                    serde_yaml::Value::Number(n) => n.to_string(),
                    serde_yaml::Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(SecretError::Unreadable {
                            path: shown,
                            reason: format!("secret `{k}` must be a plain value"),
                        });
                    }
                };
                file.insert(k, value);
            }
        }
        Ok(Secrets { file_path, file })
    }

    /// Resolves a secret by name; the value is registered for masking.
    pub fn get(&self, name: &str) -> Option<String> {
        let env_name = format!("CLERK_SECRET_{}", name.to_ascii_uppercase());
        let value = std::env::var(&env_name)
            .ok()
            .or_else(|| self.file.get(name).cloned())?;
        register(&value);
        Some(value)
    }

    pub fn file_path(&self) -> &Path {
        &self.file_path
    }

    /// The `secrets` object templates see.
    pub fn template_object(self: &Arc<Self>) -> Value {
        Value::from_object(SecretsObject(self.clone()))
    }
}

#[derive(Debug)]
struct SecretsObject(Arc<Secrets>);

impl Object for SecretsObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        self.0.get(name).map(Value::from)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::NonEnumerable
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secrets>")
    }
}

/// A writer that redacts secrets before passing text on (used for logs).
pub struct RedactingWriter<W: Write>(pub W);

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_values_and_case_forms_are_masked() {
        register("s3cr3t-Token-xyz");
        assert_eq!(redact("a s3cr3t-Token-xyz b"), "a *** b");
        assert_eq!(redact("S3CR3T-TOKEN-XYZ"), "***");
        assert_eq!(redact("s3cr3t-token-xyz!"), "***!");
        let mut v = serde_json::json!({"k": ["x s3cr3t-Token-xyz"]});
        redact_json(&mut v);
        assert_eq!(v, serde_json::json!({"k": ["x ***"]}));
    }

    #[test]
    fn insecure_secrets_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".clerk")).unwrap();
        let f = dir.path().join(".clerk/secrets.yaml");
        std::fs::write(&f, "a: b\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Secrets::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = Secrets::load(dir.path()).unwrap();
        assert_eq!(s.get("a").as_deref(), Some("b"));
    }
}
