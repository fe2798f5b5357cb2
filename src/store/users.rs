//! Dashboard users (`web_users`) and their sessions (`web_sessions`). A user
//! added or removed is committed together with its audit event; sessions are
//! not audited here (the dashboard records sign-in and sign-out events).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::NewEvent;
use super::time::{format_ts, now_micros, parse_ts};
use super::{Store, StoreError};

/// A row of `web_users` (the hash stays in the store: [`Store::user_password_hash`]).
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct WebUser {
    pub name: String,
    pub role: String,
    #[serde(with = "super::time::serde_ts")]
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// A signed-in browser.
#[derive(Clone, Debug)]
pub struct WebSession {
    pub user: WebUser,
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Adds a user AND appends `event` in one transaction. False if a user of
    /// that name exists (nothing is written then).
    pub async fn add_user(
        &self,
        name: &str,
        role: &str,
        password_hash: &str,
        event: NewEvent,
    ) -> Result<bool, StoreError> {
        let q = self
            .sql(
                "INSERT INTO web_users (name, role, password_hash, created_at, created_by) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
            )
            .into_owned();
        let (q, event) = (&q, &event);
        self.write(|| async move {
            let mut tx = self.begin_write().await?;
            let n = sqlx::query(q)
                .bind(name)
                .bind(role)
                .bind(password_hash)
                .bind(format_ts(&now_micros()))
                .bind(event.actor.as_str())
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e, format_args!("insert into web_users (user {name})")))?
                .rows_affected();
            if n == 0 {
                tx.rollback()
                    .await
                    .map_err(|e| self.err(e, "roll back web_users insert"))?;
                return Ok(false);
            }
            self.append_in_tx(&mut tx, event.clone()).await?;
            tx.commit()
                .await
                .map_err(|e| self.err(e, format_args!("commit user {name}")))?;
            Ok(true)
        })
        .await
    }

    /// Removes a user and their sessions AND appends `event`. False if there
    /// was no such user.
    pub async fn remove_user(&self, name: &str, event: NewEvent) -> Result<bool, StoreError> {
        let del_user = self
            .sql("DELETE FROM web_users WHERE name = $1")
            .into_owned();
        let del_sessions = self
            .sql("DELETE FROM web_sessions WHERE user_name = $1")
            .into_owned();
        let (del_user, del_sessions, event) = (&del_user, &del_sessions, &event);
        self.write(|| async move {
            let mut tx = self.begin_write().await?;
            let n = sqlx::query(del_user)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e, format_args!("delete from web_users (user {name})")))?
                .rows_affected();
            if n == 0 {
                tx.rollback()
                    .await
                    .map_err(|e| self.err(e, "roll back web_users delete"))?;
                return Ok(false);
            }
            sqlx::query(del_sessions)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e, format_args!("delete sessions of user {name}")))?;
            self.append_in_tx(&mut tx, event.clone()).await?;
            tx.commit()
                .await
                .map_err(|e| self.err(e, format_args!("commit removal of user {name}")))?;
            Ok(true)
        })
        .await
    }

    /// All users, by name.
    pub async fn list_users(&self) -> Result<Vec<WebUser>, StoreError> {
        let rows =
            sqlx::query("SELECT name, role, created_at, created_by FROM web_users ORDER BY name")
                .fetch_all(self.pool())
                .await
                .map_err(|e| self.err(e, "read web_users"))?;
        rows.iter().map(|r| self.decode_user(r)).collect()
    }

    /// The user and their argon2id PHC string, if the user exists.
    pub async fn user_password_hash(
        &self,
        name: &str,
    ) -> Result<Option<(WebUser, String)>, StoreError> {
        let q = self.sql(
            "SELECT name, role, created_at, created_by, password_hash FROM web_users WHERE name = $1",
        );
        let row = sqlx::query(&q)
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(|e| self.err(e, format_args!("read web_users (user {name})")))?;
        let Some(row) = row else { return Ok(None) };
        let user = self.decode_user(&row)?;
        let hash: String = row
            .try_get("password_hash")
            .map_err(|e| self.err(e, "read web_users.password_hash"))?;
        Ok(Some((user, hash)))
    }

    /// Stores a new session (by the SHA-256 of its cookie token).
    pub async fn create_session(
        &self,
        token_hash: &str,
        user: &str,
        csrf: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let q = self
            .sql(
                "INSERT INTO web_sessions (token_hash, user_name, csrf, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .into_owned();
        let q = &q;
        self.write(|| async move {
            sqlx::query(q)
                .bind(token_hash)
                .bind(user)
                .bind(csrf)
                .bind(format_ts(&now_micros()))
                .bind(format_ts(&expires_at))
                .execute(self.pool())
                .await
                .map_err(|e| self.err(e, format_args!("insert web session of user {user}")))?;
            Ok(())
        })
        .await
    }

    /// The live session with this token hash and its user (a user removed
    /// since, or an expired session, is no session).
    pub async fn session(&self, token_hash: &str) -> Result<Option<WebSession>, StoreError> {
        let q = self.sql(
            "SELECT u.name, u.role, u.created_at, u.created_by, s.csrf, s.expires_at \
             FROM web_sessions s JOIN web_users u ON u.name = s.user_name \
             WHERE s.token_hash = $1",
        );
        let row = sqlx::query(&q)
            .bind(token_hash)
            .fetch_optional(self.pool())
            .await
            .map_err(|e| self.err(e, "read web_sessions"))?;
        let Some(row) = row else { return Ok(None) };
        let user = self.decode_user(&row)?;
        let csrf: String = row
            .try_get("csrf")
            .map_err(|e| self.err(e, "read web_sessions.csrf"))?;
        let exp: String = row
            .try_get("expires_at")
            .map_err(|e| self.err(e, "read web_sessions.expires_at"))?;
        let expires_at = parse_ts(&exp).ok_or_else(|| {
            self.other(format_args!("web_sessions.expires_at is not a time: {exp}"))
        })?;
        if expires_at <= Utc::now() {
            return Ok(None);
        }
        Ok(Some(WebSession {
            user,
            csrf,
            expires_at,
        }))
    }

    /// Ends a session (sign-out); also drops every expired session.
    pub async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        let q = self
            .sql("DELETE FROM web_sessions WHERE token_hash = $1 OR expires_at < $2")
            .into_owned();
        let q = &q;
        self.write(|| async move {
            sqlx::query(q)
                .bind(token_hash)
                .bind(format_ts(&now_micros()))
                .execute(self.pool())
                .await
                .map_err(|e| self.err(e, "delete web session"))?;
            Ok(())
        })
        .await
    }

    fn decode_user(&self, row: &AnyRow) -> Result<WebUser, StoreError> {
        let get = |col: &str| -> Result<String, StoreError> {
            row.try_get::<String, _>(col)
                .map_err(|e| self.err(e, format_args!("read web_users.{col}")))
        };
        let name = get("name")?;
        let at = get("created_at")?;
        Ok(WebUser {
            created_at: parse_ts(&at).ok_or_else(|| {
                self.other(format_args!(
                    "web_users.created_at of {name} is not a time: {at}"
                ))
            })?,
            role: get("role")?,
            created_by: get("created_by")?,
            name,
        })
    }
}
