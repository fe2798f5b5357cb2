//! Test support for the core CLI tests: a temporary workspace and a way to run
//! the real `clerk` binary in it, against SQLite or a fresh PostgreSQL database.

#![allow(dead_code)]

pub mod chrome;
pub mod flagship;
pub mod imap;
pub mod portal;
pub mod smtp;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Which store a test runs against.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A temporary workspace with its own store.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub db_url: Option<String>,
    pg_db: Option<String>,
}

impl Workspace {
    pub fn new(backend: Backend) -> Workspace {
        let dir = tempfile::tempdir().expect("temp dir");
        let (db_url, pg_db) = match backend {
            Backend::Sqlite => (None, None),
            Backend::Postgres => {
                let name = format!(
                    "clerk_core_{}",
                    ulid::Ulid::new().to_string().to_lowercase()
                );
                create_pg_database(&name);
                (
                    Some(format!("postgres://postgres@127.0.0.1:5432/{name}")),
                    Some(name),
                )
            }
        };
        Workspace { dir, db_url, pg_db }
    }

    /// Another workspace folder on the same store as `other` (several
    /// `clerk serve` machines sharing one PostgreSQL database).
    pub fn sharing_store_of(other: &Workspace) -> Workspace {
        Workspace {
            dir: tempfile::tempdir().expect("temp dir"),
            db_url: other.db_url.clone(),
            pg_db: None,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, text).expect("write");
        p
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(rel)).expect("read")
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_clerk"));
        c.arg("--workspace").arg(self.dir.path());
        c.current_dir(self.dir.path());
        c.env_remove("CLERK_DATABASE_URL");
        c.env("RUST_LOG", "clerk=info");
        if let Some(url) = &self.db_url {
            c.arg("--db").arg(url);
        }
        c
    }

    pub fn clerk(&self, args: &[&str]) -> Run {
        self.clerk_env(args, &[])
    }

    pub fn clerk_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = self.cmd();
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        Run(c.output().expect("run clerk"))
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_db {
            let _ = Command::new("psql")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-q",
                    "-c",
                ])
                .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .output();
        }
    }
}

pub fn create_pg_database(name: &str) {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-q",
            "-c",
        ])
        .arg(format!("CREATE DATABASE {name}"))
        .output()
        .expect("psql must be installed for the PostgreSQL tests");
    assert!(
        out.status.success(),
        "cannot create PostgreSQL database {name} at 127.0.0.1:5432 (is the server running? scripts/test starts it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The output of one clerk invocation.
pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.0.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\n{}",
                self.stdout(),
                self.stderr()
            )
        })
    }
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code(),
            0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// Runs SQL against the workspace's store (SQLite file or PostgreSQL database).
pub fn sql(ws: &Workspace, statement: &str) {
    query(ws, statement);
}

/// Runs a query against the workspace's store and returns its output rows
/// (`|`-separated columns).
pub fn query(ws: &Workspace, q: &str) -> Vec<String> {
    let out = match &ws.db_url {
        Some(url) => Command::new("psql")
            .arg(url)
            .args(["-qAt", "-v", "ON_ERROR_STOP=1", "-c", q])
            .output(),
        None => Command::new("sqlite3")
            .arg(ws.path().join(".clerk/clerk.db"))
            .arg(q)
            .output(),
    }
    .expect("sqlite3 / psql must be installed");
    assert!(
        out.status.success(),
        "SQL failed: {q}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Everything the store holds, as text (for "no secret anywhere" checks).
pub fn dump_store(ws: &Workspace) -> String {
    let out = match &ws.db_url {
        Some(url) => Command::new("pg_dump").arg("--data-only").arg(url).output(),
        None => Command::new("sqlite3")
            .arg(ws.path().join(".clerk/clerk.db"))
            .arg(".dump")
            .output(),
    }
    .expect("sqlite3 / pg_dump must be installed");
    assert!(
        out.status.success(),
        "dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if ws.db_url.is_none() {
        // Also the raw bytes of the database and WAL files.
        for f in ["clerk.db", "clerk.db-wal"] {
            if let Ok(bytes) = std::fs::read(ws.path().join(".clerk").join(f)) {
                text.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    text
}
