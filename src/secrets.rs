//! Secrets and the redactor that keeps them out of everything clerk writes.
//!
//! `secrets.NAME` resolves from `CLERK_SECRET_NAME` or the workspace file
//! `.clerk/secrets.yaml` (a flat map, refused if group- or world-readable).
//! Every value that was resolved — and every value *derived* from a secret by a
//! template (the engine registers those too) — joins a process-wide list, and
//! [`redact`] replaces each occurrence, with its upper- and lower-case forms,
//! by `***` in audit events, logs, errors, CLI output and exports.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};
use minijinja::value::{Enumerator, Object, ObjectRepr, Value};

/// What replaces a secret.
pub const MASK: &str = "***";

/// What replaces a whole text when the masker cannot be used (its lock was
/// poisoned by a panic): clerk fails closed and never returns the text as is.
pub const MASK_UNAVAILABLE: &str = "*** (text withheld: the secret masker is unavailable)";

/// Shorter values are not masked: masking "ab" everywhere would destroy the
/// output and such a value protects nothing anyway. Values are trimmed first;
/// a secret of 3 characters or more is masked with its upper- and lower-case
/// forms.
pub const MIN_SECRET_LEN: usize = 3;

/// The values one run must never show, and an automaton that finds them all in
/// one pass over a text (aho-corasick, leftmost-longest so a secret containing
/// another is masked whole). One `Masker` belongs to one run and is dropped
/// with it; `clerk serve` running thousands of runs holds only the masters of
/// the runs in progress.
#[derive(Default)]
pub struct Masker {
    inner: RwLock<MaskerInner>,
}

#[derive(Default)]
struct MaskerInner {
    values: BTreeSet<String>,
    /// Built lazily after a registration; `None` while `dirty`.
    automaton: Option<Arc<AhoCorasick>>,
    dirty: bool,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.inner.read().map(|i| i.values.len()).unwrap_or(0);
        write!(f, "Masker({n} values)")
    }
}

impl Masker {
    pub fn new() -> Arc<Masker> {
        Arc::new(Masker::default())
    }

    /// Adds a value (and its case variants).
    pub fn register(&self, value: &str) {
        let value = value.trim();
        if value.chars().count() < MIN_SECRET_LEN {
            return;
        }
        // A poisoned lock: the masker is unusable and `redact` fails closed.
        let Ok(mut inner) = self.inner.write() else {
            return;
        };
        for form in [
            value.to_string(),
            value.to_uppercase(),
            value.to_lowercase(),
        ] {
            if form.chars().count() >= MIN_SECRET_LEN && inner.values.insert(form) {
                inner.dirty = true;
            }
        }
        if inner.dirty {
            inner.automaton = None;
        }
    }

    /// How many values (forms included) are masked.
    pub fn len(&self) -> usize {
        self.inner.read().map(|i| i.values.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The automaton, rebuilt after registrations; `Err` if the masker is unusable.
    fn automaton(&self) -> Result<Option<Arc<AhoCorasick>>, ()> {
        {
            let inner = self.inner.read().map_err(|_| ())?;
            if inner.values.is_empty() {
                return Ok(None);
            }
            if !inner.dirty
                && let Some(a) = &inner.automaton
            {
                return Ok(Some(a.clone()));
            }
        }
        let mut inner = self.inner.write().map_err(|_| ())?;
        if inner.dirty || inner.automaton.is_none() {
            let built = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(inner.values.iter())
                .map_err(|_| ())?;
            inner.automaton = Some(Arc::new(built));
            inner.dirty = false;
        }
        Ok(inner.automaton.clone())
    }

    /// `text` with every value replaced by `***`; fails closed.
    pub fn redact(&self, text: &str) -> String {
        match self.automaton() {
            Ok(None) => text.to_string(),
            Ok(Some(a)) => {
                if a.is_match(text) {
                    let replacements = vec![MASK; a.patterns_len()];
                    a.replace_all(text, &replacements)
                } else {
                    text.to_string()
                }
            }
            Err(()) => MASK_UNAVAILABLE.to_string(),
        }
    }

    /// Runs `fut` with this masker as the current run's: [`register`] and
    /// [`redact`] called inside it (on this task) use it.
    pub fn scope<F: Future>(self: &Arc<Self>, fut: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self.clone(), fut)
    }

    /// Like [`Masker::scope`] for blocking code (`spawn_blocking` closures).
    pub fn scope_sync<R>(self: &Arc<Self>, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self.clone(), f)
    }

    #[cfg(test)]
    fn poison(&self) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _guard = self.inner.write();
            panic!("poisoning the masker for a test");
        }));
    }
}

tokio::task_local! {
    static CURRENT: Arc<Masker>;
}

/// The masker of the run this task belongs to, if any (to pass to tasks the
/// run spawns).
pub fn current_masker() -> Option<Arc<Masker>> {
    CURRENT.try_with(|m| m.clone()).ok()
}

/// Values resolved outside any run (a failure notice's SMTP password, the CLI
/// itself): few, deduplicated, and kept for the process.
fn ambient() -> &'static Masker {
    static AMBIENT: OnceLock<Masker> = OnceLock::new();
    AMBIENT.get_or_init(Masker::default)
}

/// Adds a value (and its case variants) to the current run's masker (or, outside
/// a run, to the process's).
pub fn register(value: &str) {
    match current_masker() {
        Some(m) => m.register(value),
        None => ambient().register(value),
    }
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

/// Replaces every secret value of the current run (and any resolved outside
/// runs) in `text` by `***`. If a masker cannot be used, the whole text is
/// withheld rather than returned unmasked.
pub fn redact(text: &str) -> String {
    let text = match current_masker() {
        Some(m) => m.redact(text),
        None => text.to_string(),
    };
    ambient().redact(&text)
}

/// `postgres://user:pw@host/db` → `postgres://user:***@host/db`.
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:{MASK}@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
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

/// The secret sources of one workspace. Its `Debug` names the secrets, never
/// their values.
pub struct Secrets {
    file_path: PathBuf,
    file: HashMap<String, String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.file.keys().collect();
        names.sort();
        f.debug_struct("Secrets")
            .field("file_path", &self.file_path)
            .field("file_secrets", &names)
            .finish_non_exhaustive()
    }
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

struct SecretsObject(Arc<Secrets>);

impl std::fmt::Debug for SecretsObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secrets>")
    }
}

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

    #[tokio::test]
    async fn each_run_has_its_own_masker_dropped_with_it() {
        let a = Masker::new();
        a.scope(async {
            register("alpha-secret-1");
            assert_eq!(redact("x alpha-secret-1 y"), "x *** y");
        })
        .await;
        let b = Masker::new();
        b.scope(async {
            register("beta-secret-2");
            // Run A's value is not masked in run B, nor after A ended.
            assert_eq!(redact("alpha-secret-1 beta-secret-2"), "alpha-secret-1 ***");
        })
        .await;
        assert_eq!(
            redact("alpha-secret-1 beta-secret-2"),
            "alpha-secret-1 beta-secret-2"
        );
        let weak = Arc::downgrade(&a);
        drop(a);
        assert!(weak.upgrade().is_none(), "the masker outlived its run");
    }

    #[test]
    fn a_poisoned_masker_fails_closed() {
        let m = Masker::new();
        m.register("gamma-secret-3");
        m.poison();
        let out = m.redact("the value is gamma-secret-3");
        assert!(!out.contains("gamma-secret-3"), "{out}");
        assert_eq!(out, MASK_UNAVAILABLE);
    }

    #[test]
    fn debug_never_prints_secret_values() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".clerk")).unwrap();
        let f = dir.path().join(".clerk/secrets.yaml");
        std::fs::write(&f, "api_key: hunter2-very-secret\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = Secrets::load(dir.path()).unwrap();
        let shown = format!("{s:?}");
        assert!(shown.contains("api_key"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(
            redact_url_password("postgres://bot:pa55w0rd@db.local:5432/clerk"),
            "postgres://bot:***@db.local:5432/clerk"
        );
        let config = crate::config::Config {
            database: "postgres://bot:pa55w0rd@db.local/clerk".into(),
            ..Default::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("pa55w0rd"), "{shown}");
        assert!(shown.contains("db.local"), "{shown}");
    }

    #[test]
    fn masking_is_one_pass_longest_first() {
        let m = Masker::new();
        m.register("abc-123");
        m.register("abc-123-long-form");
        assert_eq!(m.redact("[abc-123-long-form] [abc-123]"), "[***] [***]");
        assert_eq!(m.redact("ABC-123"), "***");
        m.register("ab");
        assert_eq!(m.len(), 4, "two-character values are not masked");
    }

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
