//! Deployed versions of the bots (`clerk deploy`): the SQL behind
//! `deployments`, `deployment_bots` and the content-addressed
//! `deploy_contents` (migration 0013).
//!
//! A version is the whole set of bots a store runs: each `clerk deploy`
//! writes a new version (numbered 1, 2, 3, ... in commit order) together with
//! its `deploy.created` audit event, in one transaction. Nothing here decides
//! what to deploy or validates it; that is `scheduler::deployed`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row as _;

use super::NewEvent;
use super::time::{format_ts, now_micros, parse_ts};
use super::{Backend, Store, StoreError};

/// Arbitrary constant key for `pg_advisory_xact_lock` ("clerk" + "dep"):
/// deploys take their version number one at a time.
const PG_DEPLOY_LOCK: i64 = 0x636c_6572_6b64_6570;

/// One bot of a deployed version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeployedBot {
    pub bot: String,
    /// The bot file, relative to the workspace (as deployed).
    pub bot_path: String,
    pub bot_sha256: String,
    /// The playbook file, relative to the workspace (as deployed).
    pub playbook_path: String,
    pub playbook_sha256: String,
}

/// A deployed version.
#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    pub version: i64,
    #[serde(with = "super::time::serde_ts")]
    pub deployed_at: DateTime<Utc>,
    pub deployed_by: String,
    pub host: String,
    /// The folder deployed from (on the deploying machine).
    pub source: String,
    /// SHA-256 over the sorted (bot, bot SHA-256, playbook SHA-256) lines.
    pub set_sha256: String,
    /// The version this one re-deployed (`clerk deploy --version N`).
    pub rollback_of: Option<i64>,
    pub bots: Vec<DeployedBot>,
}

/// What `clerk deploy` asks the store to record.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    pub deployed_by: String,
    pub host: String,
    pub source: String,
    pub set_sha256: String,
    pub rollback_of: Option<i64>,
    pub bots: Vec<DeployedBot>,
    /// Every file's text by its SHA-256 (bot files and playbooks).
    pub contents: BTreeMap<String, String>,
}

impl Store {
    /// Records `new` as the next version and appends the event `event(version)`
    /// in the same transaction. Returns the version.
    pub async fn create_deployment(
        &self,
        new: &NewDeployment,
        event: &(dyn Fn(i64) -> NewEvent + Send + Sync),
    ) -> Result<i64, StoreError> {
        let insert_content = self
            .sql(
                "INSERT INTO deploy_contents (sha256, content) VALUES ($1, $2) \
                 ON CONFLICT (sha256) DO NOTHING",
            )
            .into_owned();
        let insert_version = self
            .sql(
                "INSERT INTO deployments (version, deployed_at, deployed_by, host, source, set_sha256, rollback_of) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .into_owned();
        let insert_bot = self
            .sql(
                "INSERT INTO deployment_bots (version, bot, bot_path, bot_sha256, playbook_path, playbook_sha256) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .into_owned();
        let (insert_content, insert_version, insert_bot) =
            (&insert_content, &insert_version, &insert_bot);
        self.write(|| async move {
            let mut tx = self.begin_write().await?;
            if self.backend() == Backend::Postgres {
                // `::text`: the Any driver cannot decode PostgreSQL's `void`.
                sqlx::query("SELECT pg_advisory_xact_lock($1)::text")
                    .bind(PG_DEPLOY_LOCK)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e, "lock for deploy"))?;
            }
            let last: Option<i64> = sqlx::query("SELECT MAX(version) AS v FROM deployments")
                .fetch_one(&mut *tx)
                .await
                .and_then(|r| r.try_get("v"))
                .map_err(|e| self.err(e, "read the last deployed version"))?;
            let version = last.unwrap_or(0) + 1;
            for (sha, text) in &new.contents {
                sqlx::query(insert_content)
                    .bind(sha.as_str())
                    .bind(text.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e, format_args!("store deployed file {sha}")))?;
            }
            sqlx::query(insert_version)
                .bind(version)
                .bind(format_ts(&now_micros()))
                .bind(new.deployed_by.as_str())
                .bind(new.host.as_str())
                .bind(new.source.as_str())
                .bind(new.set_sha256.as_str())
                .bind(new.rollback_of)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e, format_args!("record deployed version {version}")))?;
            for b in &new.bots {
                sqlx::query(insert_bot)
                    .bind(version)
                    .bind(b.bot.as_str())
                    .bind(b.bot_path.as_str())
                    .bind(b.bot_sha256.as_str())
                    .bind(b.playbook_path.as_str())
                    .bind(b.playbook_sha256.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| {
                        self.err(e, format_args!("record bot {} of version {version}", b.bot))
                    })?;
            }
            self.append_in_tx(&mut tx, event(version)).await?;
            tx.commit()
                .await
                .map_err(|e| self.err(e, format_args!("commit deployed version {version}")))?;
            Ok(version)
        })
        .await
    }

    /// The newest deployed version number, if anything was ever deployed.
    pub async fn latest_deploy_version(&self) -> Result<Option<i64>, StoreError> {
        sqlx::query("SELECT MAX(version) AS v FROM deployments")
            .fetch_one(self.pool())
            .await
            .and_then(|r| r.try_get("v"))
            .map_err(|e| self.err(e, "read the last deployed version"))
    }

    /// One deployed version with its bots (by name), or `None`.
    pub async fn deployment(&self, version: i64) -> Result<Option<Deployment>, StoreError> {
        let q = self.sql(
            "SELECT version, deployed_at, deployed_by, host, source, set_sha256, rollback_of \
             FROM deployments WHERE version = $1",
        );
        let row = sqlx::query(&q)
            .bind(version)
            .fetch_optional(self.pool())
            .await
            .map_err(|e| self.err(e, format_args!("read deployed version {version}")))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut d = self.deployment_row(&row)?;
        let q = self.sql(
            "SELECT bot, bot_path, bot_sha256, playbook_path, playbook_sha256 \
             FROM deployment_bots WHERE version = $1 ORDER BY bot",
        );
        let rows = sqlx::query(&q)
            .bind(version)
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e, format_args!("read the bots of version {version}")))?;
        for r in rows {
            d.bots.push(self.bot_row(&r)?);
        }
        Ok(Some(d))
    }

    /// Every deployed version, oldest first, without their bots.
    pub async fn deployments(&self) -> Result<Vec<Deployment>, StoreError> {
        let rows = sqlx::query(
            "SELECT version, deployed_at, deployed_by, host, source, set_sha256, rollback_of \
             FROM deployments ORDER BY version",
        )
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.err(e, "read deployments"))?;
        rows.iter().map(|r| self.deployment_row(r)).collect()
    }

    /// The bot `name` in every version that has it: (version, its entry).
    pub async fn deployed_bot_history(
        &self,
        name: &str,
    ) -> Result<Vec<(i64, DeployedBot)>, StoreError> {
        let q = self.sql(
            "SELECT version, bot, bot_path, bot_sha256, playbook_path, playbook_sha256 \
             FROM deployment_bots WHERE bot = $1 ORDER BY version",
        );
        let rows = sqlx::query(&q)
            .bind(name)
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e, format_args!("read the versions of bot {name}")))?;
        rows.iter()
            .map(|r| {
                let v: i64 = r
                    .try_get("version")
                    .map_err(|e| self.err(e, "read deployment_bots.version"))?;
                Ok((v, self.bot_row(r)?))
            })
            .collect()
    }

    /// The text of a deployed file by its SHA-256.
    pub async fn deployed_content(&self, sha256: &str) -> Result<Option<String>, StoreError> {
        let q = self.sql("SELECT content FROM deploy_contents WHERE sha256 = $1");
        sqlx::query(&q)
            .bind(sha256)
            .fetch_optional(self.pool())
            .await
            .and_then(|r| r.map(|r| r.try_get("content")).transpose())
            .map_err(|e| self.err(e, format_args!("read deployed file {sha256}")))
    }

    /// Records which deployed version run `run_id` executes, with `event`
    /// (`run.deployment`) in the same transaction.
    pub async fn set_run_deploy_version(
        &self,
        run_id: &str,
        version: i64,
        playbook: (&str, &str),
        event: NewEvent,
    ) -> Result<(), StoreError> {
        // The claim stamped the playbook the worker knew then; a deploy
        // committed in between makes the run execute the newer one, and
        // the run must name what it executed.
        let q = self
            .sql(
                "UPDATE runs SET deploy_version = $1, playbook_sha256 = $3, playbook_steps = $4 \
                 WHERE id = $2",
            )
            .into_owned();
        let (q, event) = (&q, &event);
        self.write(|| async move {
            let mut tx = self.begin_write().await?;
            sqlx::query(q)
                .bind(version)
                .bind(run_id)
                .bind(playbook.0)
                .bind(playbook.1)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e, format_args!("record the version of run {run_id}")))?;
            self.append_in_tx(&mut tx, event.clone()).await?;
            tx.commit()
                .await
                .map_err(|e| self.err(e, format_args!("commit the version of run {run_id}")))
        })
        .await
    }

    /// The deployed version run `run_id` executed (`None`: not a deployed run).
    pub async fn run_deploy_version(&self, run_id: &str) -> Result<Option<i64>, StoreError> {
        let q = self.sql("SELECT deploy_version FROM runs WHERE id = $1");
        sqlx::query(&q)
            .bind(run_id)
            .fetch_optional(self.pool())
            .await
            .and_then(|r| {
                r.map(|r| r.try_get::<Option<i64>, _>("deploy_version"))
                    .transpose()
            })
            .map(Option::flatten)
            .map_err(|e| self.err(e, format_args!("read the version of run {run_id}")))
    }

    fn deployment_row(&self, r: &sqlx::any::AnyRow) -> Result<Deployment, StoreError> {
        let get = |c: &str| -> Result<String, StoreError> {
            r.try_get::<String, _>(c)
                .map_err(|e| self.err(e, format_args!("read deployments.{c}")))
        };
        let at = get("deployed_at")?;
        Ok(Deployment {
            version: r
                .try_get("version")
                .map_err(|e| self.err(e, "read deployments.version"))?,
            deployed_at: parse_ts(&at).ok_or_else(|| {
                self.other(format_args!(
                    "deployments.deployed_at is not a timestamp: '{at}'"
                ))
            })?,
            deployed_by: get("deployed_by")?,
            host: get("host")?,
            source: get("source")?,
            set_sha256: get("set_sha256")?,
            rollback_of: r
                .try_get("rollback_of")
                .map_err(|e| self.err(e, "read deployments.rollback_of"))?,
            bots: Vec::new(),
        })
    }

    fn bot_row(&self, r: &sqlx::any::AnyRow) -> Result<DeployedBot, StoreError> {
        let get = |c: &str| -> Result<String, StoreError> {
            r.try_get::<String, _>(c)
                .map_err(|e| self.err(e, format_args!("read deployment_bots.{c}")))
        };
        Ok(DeployedBot {
            bot: get("bot")?,
            bot_path: get("bot_path")?,
            bot_sha256: get("bot_sha256")?,
            playbook_path: get("playbook_path")?,
            playbook_sha256: get("playbook_sha256")?,
        })
    }
}
