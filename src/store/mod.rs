//! The persistence layer: one [`Store`] over a sqlx `AnyPool`, backed by an
//! SQLite file (the default, `sqlite://.clerk/clerk.db`) or PostgreSQL
//! (`postgres://user@host/db`, for shared multi-machine deployments).
//!
//! It holds the run queue and history (`runs`), the persisted bot pause flags
//! (`bot_state`), the scheduler lease (`scheduler_lease`) and the hash-chained
//! audit trail (`audit_events`). Every state change that the auditor must see
//! (a run queued, started, finished; a bot paused) is written together with its
//! audit event in ONE transaction, so the audit log never disagrees with the
//! tables.
//!
//! Portability rules: only TEXT and BIGINT columns; timestamps are TEXT in
//! RFC 3339 UTC with exactly six fractional digits and `Z` (see [`time`]);
//! queries are written with `$1, $2` placeholders and adapted per backend by
//! [`Store::sql`]. The schema is created by the embedded migrator in
//! [`migrate`].
//!
//! Layering: the store owns the audit event row ([`event`]), its hashing
//! ([`chain`], [`format`]) and the one chain append (`events.rs`); it never
//! imports `crate::audit`. The recorder (secret masking), verify and export
//! sit above it in `crate::audit`.
//!
//! Concurrency: write transactions are serialised inside one process by an
//! async mutex, start with `BEGIN IMMEDIATE` on SQLite (no lock-upgrade
//! deadlocks; `busy_timeout` 10 s) and are retried, bounded and with jittered
//! sleeps, when the database reports a transient error (busy/locked,
//! serialization failure, deadlock, a lost race for the next audit id). On
//! PostgreSQL appends to the audit chain take an EXCLUSIVE table lock on
//! `audit_events` (readers are not blocked), so several processes on one
//! database append in turn.

mod bots;
pub mod chain;
mod dashboard;
mod deploy;
mod error;
pub mod event;
mod events;
pub mod format;
pub mod group;
mod imap_journal;
mod items;
mod lease;
pub mod liveness;
mod mail_journal;
pub mod migrate;
mod reserve;
mod runs;
mod sched;
pub mod time;
mod users;
pub mod workers;

use std::borrow::Cow;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions as _, Connection as _, Executor as _};

pub use bots::BotState;
pub use chain::GENESIS_HASH;
pub use dashboard::{ItemEvent, RunSearch};
pub use deploy::{DeployedBot, Deployment, NewDeployment};
pub use error::StoreError;
pub use event::{AuditEvent, NewEvent, OptString};
pub use events::{RawEvent, RawRow};
pub use imap_journal::{ImapJournalEntry, TriggerMessage, TriggerState};
pub use items::{ItemChange, ItemCounts, ItemFilter, ItemId, ItemMove, ItemRow, ItemState, Moved};
pub use lease::{ExpiredRun, Fence};
pub use mail_journal::MailJournalEntry;
pub use runs::{
    FollowUpRun, NewRun, RESUMABLE_STATUSES, RunChange, RunFilter, RunRow, default_lineage,
};
pub use sched::{
    BotRunSummary, Claim, ClaimBatch, ClaimScope, LeaseRow, PlaybookStamp, QueuedRun, SchedBatch,
};
pub use users::{WebSession, WebUser};
pub use workers::{NewWorker, WorkerRow};

/// Which database a [`Store`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle on the database: cheap to clone, shared by all tasks.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    pool: AnyPool,
    backend: Backend,
    /// The URL with any password replaced by `***`, for error messages.
    url: String,
    /// Serialises this process's write transactions (avoids self-contention
    /// on SQLite and on the audit chain head).
    write_lock: tokio::sync::Mutex<()>,
    /// Audit events waiting for their group commit (see [`group`]).
    pending: std::sync::Mutex<group::Pending>,
    /// Wakes the background flusher when a batch is full.
    flush_now: Arc<tokio::sync::Notify>,
    /// The longest an event waits for its batch, in ms (see [`group`]).
    flush_after_ms: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.inner.backend)
            .field("url", &self.inner.url)
            .finish()
    }
}

/// How many times a write transaction is attempted before a transient error
/// is returned to the caller.
const MAX_WRITE_ATTEMPTS: u32 = 12;

impl Store {
    /// Opens (and migrates) the store at `url`.
    ///
    /// `sqlite://path/to/clerk.db` (relative to the current directory; parent
    /// directories and the file are created; WAL journal, `busy_timeout` 10 s,
    /// foreign keys on) or `postgres://...`. Runs the embedded migrations
    /// (idempotent, recorded in `schema_migrations`, safe if two processes
    /// start at once). Errors name the URL with any password removed.
    pub async fn open(url: &str) -> anyhow::Result<Store> {
        let shown = redact_url(url);
        let (backend, connect_url) = if let Some(rest) = strip_scheme(url, &["sqlite"]) {
            (
                Backend::Sqlite,
                prepare_sqlite(rest).with_context(|| format!("cannot open store {shown}"))?,
            )
        } else if strip_scheme(url, &["postgres", "postgresql"]).is_some() {
            (Backend::Postgres, url.to_string())
        } else {
            anyhow::bail!(
                "cannot open store {shown}: unsupported database URL (expected sqlite://PATH or postgres://...)"
            );
        };

        sqlx::any::install_default_drivers();
        let options: AnyConnectOptions = connect_url
            .parse()
            .with_context(|| format!("cannot open store {shown}: invalid database URL"))?;
        let mut pool_options = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(15))
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 10,
            });
        if backend == Backend::Sqlite {
            if connect_url.contains(":memory:") {
                // Every connection to `:memory:` is its own database.
                pool_options = pool_options.max_connections(1).min_connections(1);
            }
            pool_options = pool_options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            });
        }
        // One plain connection first: an unreachable server or a wrong
        // database fails at once with its real cause (the pool would keep
        // retrying until its acquire timeout).
        let probe = tokio::time::timeout(Duration::from_secs(15), options.connect())
            .await
            .map_err(|_| anyhow::anyhow!("cannot connect to store {shown}: timed out after 15 s"))?
            .map_err(|e| anyhow::anyhow!("cannot connect to store {shown}: {e}"))?;
        let _ = probe.close().await;
        let pool = pool_options
            .connect_with(options)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to store {shown}: {e}"))?;

        let store = Store {
            inner: Arc::new(Inner {
                pool,
                backend,
                url: shown.clone(),
                write_lock: tokio::sync::Mutex::new(()),
                pending: std::sync::Mutex::new(group::Pending::default()),
                flush_now: Arc::new(tokio::sync::Notify::new()),
                flush_after_ms: std::sync::atomic::AtomicU64::new(
                    group::FLUSH_AFTER.as_millis() as u64
                ),
            }),
        };
        migrate::run(&store)
            .await
            .with_context(|| format!("cannot migrate store {shown}"))?;
        Ok(store)
    }

    /// The database behind this store.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// The connection pool, for queries this module does not offer.
    pub fn pool(&self) -> &AnyPool {
        &self.inner.pool
    }

    /// The URL this store was opened with, password removed.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Adapts a query written with `$1, $2` placeholders to the backend
    /// (SQLite: `?1, ?2`). Placeholders inside single-quoted literals are left
    /// alone.
    pub fn sql<'a>(&self, q: &'a str) -> Cow<'a, str> {
        match self.inner.backend {
            Backend::Postgres => Cow::Borrowed(q),
            Backend::Sqlite => sqlite_placeholders(q),
        }
    }

    /// Commits the deferred audit events, then closes the pool (waits for
    /// connections to be returned).
    pub async fn close(&self) {
        if let Err(e) = self.flush_events().await {
            tracing::warn!("cannot commit deferred audit events before closing the store: {e}");
        }
        self.inner.pool.close().await;
    }

    /// Wraps a sqlx error with what was being done and where.
    pub(crate) fn err(&self, e: sqlx::Error, what: impl std::fmt::Display) -> StoreError {
        StoreError::from_sqlx(
            self.inner.backend,
            e,
            &format!("store {}: {what}", self.inner.url),
        )
    }

    /// A non-database failure (bad data in a row...), with the store named.
    pub(crate) fn other(&self, what: impl std::fmt::Display) -> StoreError {
        StoreError::Other(format!("store {}: {what}", self.inner.url))
    }

    /// Begins a write transaction: `BEGIN IMMEDIATE` on SQLite so the write
    /// lock is taken up front (no deadlock on lock upgrade).
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        let r = match self.inner.backend {
            Backend::Sqlite => self.begin_immediate().await,
            Backend::Postgres => self.inner.pool.begin().await,
        };
        r.map_err(|e| self.err(e, "begin transaction"))
    }

    /// `BEGIN IMMEDIATE` on a pooled connection that is not stuck in a
    /// transaction. A COMMIT that fails (a full disk) leaves sqlx's
    /// transaction depth on its connection above zero, and every later BEGIN
    /// on it fails ("non-zero transaction depth"): such a connection is closed
    /// and another one taken.
    async fn begin_immediate(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        use sqlx::Connection as _;
        let mut conn = self.inner.pool.acquire().await?;
        for _ in 0..4 {
            if !conn.is_in_transaction() {
                break;
            }
            tracing::debug!("closing a store connection left inside a failed transaction");
            let _ = conn.close().await;
            conn = self.inner.pool.acquire().await?;
        }
        sqlx::Transaction::begin(conn, Some("BEGIN IMMEDIATE".into())).await
    }

    /// Runs `attempt` (which opens, uses and commits its own transaction,
    /// usually via [`Store::begin_write`]) under the in-process write lock,
    /// retrying on transient errors with jittered sleeps.
    pub(crate) async fn write<T, F, Fut>(&self, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut n = 0u32;
        loop {
            n += 1;
            let result = {
                let _guard = self.inner.write_lock.lock().await;
                self.begin_attempt();
                let result = attempt().await;
                // Deferred events this attempt drained stay drained only if
                // they were committed (see `group`).
                self.end_attempt(result.is_ok()).await;
                result
            };
            match result {
                Err(e) if e.is_transient() && n < MAX_WRITE_ATTEMPTS => {
                    tracing::debug!(attempt = n, error = %e, "transient store error, retrying");
                    tokio::time::sleep(backoff(n)).await;
                }
                other => return other,
            }
        }
    }
}

/// Sleep before retry `n` (1-based): 5 ms doubling up to ~320 ms, plus up to
/// 100 % jitter so that competing processes drift apart.
fn backoff(n: u32) -> Duration {
    let base = 5u64 << n.min(6);
    let jitter = (ulid::Ulid::new().random() % u128::from(base)) as u64;
    Duration::from_millis(base + jitter)
}

/// Returns the part after `scheme:` (and an optional `//`) if `url` starts with
/// one of `schemes`.
fn strip_scheme<'a>(url: &'a str, schemes: &[&str]) -> Option<&'a str> {
    let (scheme, rest) = url.split_once(':')?;
    if schemes.iter().any(|s| scheme.eq_ignore_ascii_case(s)) {
        Some(rest.strip_prefix("//").unwrap_or(rest))
    } else {
        None
    }
}

/// Creates the parent directories of an SQLite database path and returns the
/// URL to connect with (`mode=rwc` so the file is created).
fn prepare_sqlite(rest: &str) -> anyhow::Result<String> {
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if path.is_empty() {
        anyhow::bail!("no database file path after sqlite://");
    }
    let parent = Path::new(path)
        .parent()
        .filter(|p| path != ":memory:" && !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create directory {}", parent.display()))?;
    }
    let mut url = format!("sqlite://{path}");
    match query {
        Some(q) if q.split('&').any(|kv| kv.starts_with("mode=")) => {
            url.push('?');
            url.push_str(q);
        }
        Some(q) if !q.is_empty() => {
            url.push('?');
            url.push_str(q);
            url.push_str("&mode=rwc");
        }
        _ => url.push_str("?mode=rwc"),
    }
    Ok(url)
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`; also
/// masks `password=` query parameters. Other URLs are returned unchanged.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let auth_start = scheme_end + 3;
        let auth_end = out[auth_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| auth_start + i);
        if let Some(at) = out[auth_start..auth_end].rfind('@') {
            let userinfo = &out[auth_start..auth_start + at];
            if let Some(colon) = userinfo.find(':') {
                let pw_start = auth_start + colon + 1;
                let pw_end = auth_start + at;
                out.replace_range(pw_start..pw_end, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let masked: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{head}{}", masked.join("&"));
    }
    out
}

/// Rewrites `$N` placeholders for SQLite outside single-quoted literals: to
/// plain `?` when they are `$1, $2, … $k` in that order (each once), else to
/// `?N`. Why: sqlx binds a numbered parameter by asking SQLite its name, a
/// linear search per parameter, so a 256-row INSERT (4,608 parameters) spent
/// most of its time there; anonymous `?` parameters are bound in order.
fn sqlite_placeholders(q: &str) -> Cow<'_, str> {
    if !q.contains('$') {
        return Cow::Borrowed(q);
    }
    let mut numbers: Vec<u64> = Vec::new();
    let mut parts: Vec<(usize, usize)> = Vec::new(); // byte span of each `$N`
    let mut in_literal = false;
    let bytes = q.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => in_literal = !in_literal,
            b'$' if !in_literal && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let end = (i + 1..bytes.len())
                    .find(|&j| !bytes[j].is_ascii_digit())
                    .unwrap_or(bytes.len());
                numbers.push(q[i + 1..end].parse().unwrap_or(u64::MAX));
                parts.push((i, end));
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    if parts.is_empty() {
        return Cow::Borrowed(q);
    }
    let in_order = numbers.iter().enumerate().all(|(k, &n)| n == k as u64 + 1);
    let mut out = String::with_capacity(q.len());
    let mut last = 0;
    for (start, end) in parts {
        out.push_str(&q[last..start]);
        out.push('?');
        if !in_order {
            out.push_str(&q[start + 1..end]);
        }
        last = end;
    }
    out.push_str(&q[last..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        assert_eq!(
            sqlite_placeholders("a = $1 AND b = $12"),
            "a = ?1 AND b = ?12"
        );
        assert_eq!(
            sqlite_placeholders("x = '$1' OR y = $2"),
            "x = '$1' OR y = ?2"
        );
        // In order, each once: anonymous (bound in order, no name lookup).
        assert_eq!(
            sqlite_placeholders("VALUES ($1, $2, 'a$3'), ($3, $4) LIMIT $5"),
            "VALUES (?, ?, 'a$3'), (?, ?) LIMIT ?"
        );
        // Repeated or out of order: numbered.
        assert_eq!(sqlite_placeholders("a = $1 OR b = $1"), "a = ?1 OR b = ?1");
        assert_eq!(
            sqlite_placeholders("a = $2 AND b = $1"),
            "a = ?2 AND b = ?1"
        );
        assert!(matches!(sqlite_placeholders("SELECT 1"), Cow::Borrowed(_)));
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact_url("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=pw"),
            "postgres://h/db?user=u&password=***"
        );
        assert_eq!(
            redact_url("sqlite://.clerk/clerk.db"),
            "sqlite://.clerk/clerk.db"
        );
    }

    #[test]
    fn schemes() {
        assert_eq!(strip_scheme("sqlite://a/b.db", &["sqlite"]), Some("a/b.db"));
        assert_eq!(strip_scheme("sqlite:a.db", &["sqlite"]), Some("a.db"));
        assert_eq!(
            strip_scheme("postgresql://x", &["postgres", "postgresql"]),
            Some("x")
        );
    }
}
