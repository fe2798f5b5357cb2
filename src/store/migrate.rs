//! The embedded schema migrator: a tiny replacement for `sqlx::migrate!`.
//!
//! Migrations are SQL files under `src/store/migrations/`, compiled in with
//! `include_str!` and listed in [`MIGRATIONS`]; to change the schema, append a
//! new file and a new entry (never edit an applied one). Each migration runs in
//! its own write transaction together with its row in `schema_migrations`, so
//! it is applied completely or not at all. Two processes starting at once are
//! safe: on SQLite the transaction begins `IMMEDIATE` (one writer at a time),
//! on PostgreSQL it takes a transaction-scoped advisory lock first; the loser
//! then sees the version recorded and skips it.

use sqlx::Row as _;

use super::{Backend, Store, StoreError};

/// One schema change.
pub struct Migration {
    /// Strictly increasing, starting at 1; gaps are allowed (each version is
    /// applied on its own if the database does not have it yet).
    pub version: i64,
    /// Short name, recorded in `schema_migrations`.
    pub name: &'static str,
    /// Portable SQL; statements separated by `;` at the end of a line.
    pub sql: &'static str,
}

/// All migrations, in order. Append only.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("migrations/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "mail_journal",
        sql: include_str!("migrations/0002_mail_journal.sql"),
    },
    Migration {
        version: 3,
        name: "scheduler",
        sql: include_str!("migrations/0003_scheduler.sql"),
    },
    Migration {
        version: 4,
        name: "work_items",
        sql: include_str!("migrations/0004_work_items.sql"),
    },
    Migration {
        version: 5,
        name: "evidence",
        sql: include_str!("migrations/0005_evidence.sql"),
    },
    Migration {
        version: 6,
        name: "hardening",
        sql: include_str!("migrations/0006_hardening.sql"),
    },
    Migration {
        version: 7,
        name: "users",
        sql: include_str!("migrations/0007_users.sql"),
    },
    Migration {
        version: 8,
        name: "imap",
        sql: include_str!("migrations/0008_imap.sql"),
    },
    Migration {
        version: 11,
        name: "handover",
        sql: include_str!("migrations/0011_handover.sql"),
    },
    Migration {
        version: 12,
        name: "workers",
        sql: include_str!("migrations/0012_workers.sql"),
    },
    Migration {
        version: 13,
        name: "deploy",
        sql: include_str!("migrations/0013_deploy.sql"),
    },
];

/// Arbitrary constant key for `pg_advisory_xact_lock` ("clerk" + "mig").
const PG_MIGRATION_LOCK: i64 = 0x636c_6572_6b6d_6967;

const CREATE_SCHEMA_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (\
     version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)";

/// Applies every migration the database does not have yet.
pub async fn run(store: &Store) -> Result<(), StoreError> {
    // The bookkeeping table itself (concurrent CREATE TABLE IF NOT EXISTS can
    // race on PostgreSQL, hence the lock).
    store
        .write(|| async move {
            let mut tx = store.begin_write().await?;
            lock(store, &mut tx).await?;
            sqlx::query(CREATE_SCHEMA_MIGRATIONS)
                .execute(&mut *tx)
                .await
                .map_err(|e| store.err(e, "create table schema_migrations"))?;
            tx.commit()
                .await
                .map_err(|e| store.err(e, "commit schema_migrations"))
        })
        .await?;

    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    let (newest, applied, sum): (Option<i64>, i64, Option<i64>) = sqlx::query(
        "SELECT MAX(version) AS v, COUNT(*) AS n, CAST(SUM(version) AS BIGINT) AS s \
         FROM schema_migrations",
    )
    .fetch_one(store.pool())
    .await
    .and_then(|r| Ok((r.try_get("v")?, r.try_get("n")?, r.try_get("s")?)))
    .map_err(|e| store.err(e, "read schema_migrations"))?;
    if let Some(v) = newest.filter(|v| *v > known) {
        return Err(store.other(format!(
            "database schema version {v} is newer than this clerk knows ({known}); upgrade clerk"
        )));
    }
    // Every migration applied (the usual case: each `clerk` command opens
    // the store): nothing to take the write lock for.
    let all: i64 = MIGRATIONS.iter().map(|m| m.version).sum();
    if newest == Some(known)
        && usize::try_from(applied).ok() == Some(MIGRATIONS.len())
        && sum == Some(all)
    {
        return Ok(());
    }

    for m in MIGRATIONS {
        store
            .write(|| async move {
                let mut tx = store.begin_write().await?;
                lock(store, &mut tx).await?;
                let done = sqlx::query(
                    &store.sql("SELECT version FROM schema_migrations WHERE version = $1"),
                )
                .bind(m.version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| store.err(e, "read schema_migrations"))?;
                if done.is_some() {
                    return Ok(());
                }
                for (i, stmt) in statements(m.sql).iter().enumerate() {
                    sqlx::query(stmt).execute(&mut *tx).await.map_err(|e| {
                        store.err(
                            e,
                            format_args!(
                                "migration {:04}_{} statement {}",
                                m.version,
                                m.name,
                                i + 1
                            ),
                        )
                    })?;
                }
                sqlx::query(&store.sql(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                ))
                .bind(m.version)
                .bind(m.name)
                .bind(super::time::format_ts(&super::time::now_micros()))
                .execute(&mut *tx)
                .await
                .map_err(|e| store.err(e, "insert into schema_migrations"))?;
                tx.commit().await.map_err(|e| {
                    store.err(
                        e,
                        format_args!("commit migration {:04}_{}", m.version, m.name),
                    )
                })?;
                tracing::info!(
                    version = m.version,
                    name = m.name,
                    store = store.url(),
                    "applied migration"
                );
                Ok(())
            })
            .await?;
    }
    Ok(())
}

/// Serialises migrators across processes (SQLite: `BEGIN IMMEDIATE` already does).
async fn lock(store: &Store, tx: &mut sqlx::AnyConnection) -> Result<(), StoreError> {
    if store.backend() == Backend::Postgres {
        // `::text`: the Any driver cannot decode PostgreSQL's `void`.
        sqlx::query("SELECT pg_advisory_xact_lock($1)::text")
            .bind(PG_MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(|e| store.err(e, "lock for migrations"))?;
    }
    Ok(())
}

/// Splits a migration file into statements: `--` comment lines are dropped and
/// a `;` ending a line ends a statement.
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with("--") {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            let stmt = current.trim().trim_end_matches(';').trim().to_string();
            if !stmt.is_empty() {
                out.push(stmt);
            }
            current.clear();
        }
    }
    let rest = current.trim();
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements() {
        let s = statements("-- c\nCREATE TABLE a (x TEXT);\n\nCREATE INDEX i\n  ON a (x);\n");
        assert_eq!(
            s,
            vec!["CREATE TABLE a (x TEXT)", "CREATE INDEX i\n  ON a (x)"]
        );
        assert_eq!(statements(MIGRATIONS[0].sql).len(), 7);
    }
}
