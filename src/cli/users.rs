//! `clerk users add|list|remove`: who may sign in to the dashboard of
//! `clerk serve --http`, with which role. Passwords are prompted (or read from
//! stdin with `--password-stdin`) and stored only as argon2id hashes.

use std::io::{BufRead as _, IsTerminal as _};

use clap::{Args, Subcommand};
use serde_json::json;

use super::{UsageError, Workspace, code, os_user, output};
use crate::audit::NewEvent;
use crate::server::auth::{self, Role};

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user: auditor (reads everything), operator (also runs, pauses and
    /// resumes bots, retries items), admin (also manages users).
    Add(AddArgs),
    /// List the users and their roles.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a user (their sessions end at once).
    Remove { name: String },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    pub name: String,
    /// auditor, operator or admin.
    #[arg(long)]
    pub role: String,
    /// Read the password from the first line of stdin instead of prompting.
    #[arg(long)]
    pub password_stdin: bool,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

pub async fn users(ws: &Workspace, c: UsersCommand) -> anyhow::Result<u8> {
    match c {
        UsersCommand::Add(a) => {
            let Some(role) = Role::parse(&a.role) else {
                return Err(UsageError(format!(
                    "--role `{}` is not a role: auditor, operator or admin",
                    a.role
                ))
                .into());
            };
            if !valid_name(&a.name) {
                return Err(UsageError(format!(
                    "user name `{}` must be 1 to 64 letters, digits, `.`, `_`, `-` or `@`",
                    a.name
                ))
                .into());
            }
            let password = read_password(a.password_stdin)?;
            if password.chars().count() < auth::MIN_PASSWORD {
                return Err(UsageError(format!(
                    "the password must have at least {} characters",
                    auth::MIN_PASSWORD
                ))
                .into());
            }
            let hash = auth::hash_password(&password)?;
            let store = ws.store().await?;
            let event = NewEvent::new("admin.user_added", &os_user())
                .target(a.name.as_str())
                .outcome("ok")
                .detail(json!({ "user": a.name, "role": role.as_str(), "via": "cli" }));
            if store.add_user(&a.name, role.as_str(), &hash, event).await? {
                output::out(&format!("user {} added ({})", a.name, role.as_str()));
                Ok(code::OK)
            } else {
                Err(UsageError(format!(
                    "user `{}` exists already (remove it first to change its role or password)",
                    a.name
                ))
                .into())
            }
        }
        UsersCommand::List { json } => {
            let store = ws.store().await?;
            let list = store.list_users().await?;
            if json {
                output::out_json(&serde_json::to_value(&list)?);
            } else if list.is_empty() {
                output::out("no users: add one with `clerk users add NAME --role admin`");
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|u| {
                        vec![
                            u.name.clone(),
                            u.role.clone(),
                            u.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                            u.created_by.clone(),
                        ]
                    })
                    .collect();
                output::out(&output::table(
                    &["USER", "ROLE", "ADDED (UTC)", "ADDED BY"],
                    &rows,
                ));
            }
            Ok(code::OK)
        }
        UsersCommand::Remove { name } => {
            let store = ws.store().await?;
            let event = NewEvent::new("admin.user_removed", &os_user())
                .target(name.as_str())
                .outcome("ok")
                .detail(json!({ "user": name, "via": "cli" }));
            if store.remove_user(&name, event).await? {
                output::out(&format!("user {name} removed"));
                Ok(code::OK)
            } else {
                Err(UsageError(format!("no user `{name}`")).into())
            }
        }
    }
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_string());
    }
    if !std::io::stdin().is_terminal() {
        return Err(UsageError(
            "no terminal to prompt for the password: pass it on stdin with --password-stdin".into(),
        )
        .into());
    }
    let first = rpassword::prompt_password("Password: ")?;
    let again = rpassword::prompt_password("Again: ")?;
    if first != again {
        return Err(UsageError("the two passwords differ".into()).into());
    }
    Ok(first)
}
