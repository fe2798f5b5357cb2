//! File actions: read, write (atomic), copy, move, delete, list, exists.
//! Paths are relative to the workspace; every read and write records the
//! path and the SHA-256 of the content.

use std::path::{Path, PathBuf};

use anyhow::Context;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Action, ActionContext, ActionError, ActionResult};
use crate::fsutil::{sha256_hex, write_atomic};

/// Arguments of `file.read`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadArgs {
    /// The file, relative to the workspace.
    pub path: String,
    /// Text encoding: `utf-8` (default), `windows-1252`, `latin-1`, `utf-16le`, ...
    #[serde(default)]
    pub encoding: Option<String>,
}

/// Reads a text file.
pub struct Read;

impl Action for Read {
    type Args = ReadArgs;
    const NAME: &'static str = "file.read";
    const SUMMARY: &'static str = "Read a text file (the text is data, never a template).";
    const EXAMPLE: &'static str = "- file.read: { path: notes.txt }\n  save_as: notes\n";
    const SHORTHAND: Option<&'static str> = Some("path");
    const RESULT: &'static str = "{ path, text, lines, sha256, size }";

    async fn run(ctx: &mut ActionContext<'_>, args: Self::Args) -> ActionResult {
        let path = ctx.resolve(&args.path)?;
        let shown = ctx.display_path(&path);
        ctx.target(shown.clone());
        let bytes = tokio::fs::read(&path)
            .await
            .with_context(|| format!("cannot read {shown}"))
            .map_err(ActionError::permanent)?;
        let text = decode(&bytes, args.encoding.as_deref(), &shown)?;
        let sha = sha256_hex(&bytes);
        ctx.detail("sha256", sha.clone());
        ctx.detail("size", bytes.len() as u64);
        let lines: Vec<Value> = text.lines().map(Value::from).collect();
        ctx.detail("lines", lines.len() as u64);
        Ok(
            json!({ "path": shown, "text": text, "lines": lines, "sha256": sha, "size": bytes.len() }),
        )
    }
}

fn decode(bytes: &[u8], encoding: Option<&str>, shown: &str) -> Result<String, ActionError> {
    let label = encoding.unwrap_or("utf-8");
    let enc = encoding_rs::Encoding::for_label(label.as_bytes()).ok_or_else(|| {
        ActionError::permanent(anyhow::anyhow!("unknown encoding `{label}` for {shown}"))
    })?;
    let (text, _, had_errors) = enc.decode(bytes);
    if had_errors {
        let valid_upto = if enc == encoding_rs::UTF_8 {
            std::str::from_utf8(bytes).err().map(|e| e.valid_up_to())
        } else {
            None
        };
        let line = valid_upto
            .map(|n| bytes[..n].iter().filter(|b| **b == b'\n').count() + 1)
            .map(|l| format!(" (line {l})"))
            .unwrap_or_default();
        return Err(ActionError::permanent(anyhow::anyhow!(
            "{shown} is not valid {}{line}; set `encoding:` (e.g. windows-1252)",
            enc.name()
        )));
    }
    Ok(text.into_owned())
}

/// Arguments of `file.write`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteArgs {
    /// The file to write (folders are created); replaced atomically.
    pub path: String,
    /// The content; lists and maps are written as JSON.
    pub text: Value,
}

/// Writes a text file atomically (temp file + rename).
pub struct Write;

impl Action for Write {
    type Args = WriteArgs;
    const NAME: &'static str = "file.write";
    const SUMMARY: &'static str = "Write a text file atomically (temp file + rename).";
    const EXAMPLE: &'static str = "- file.write: { path: \"out/hello.txt\", text: \"Hello\\n\" }\n";
    const RESULT: &'static str = "{ path, sha256, size }";

    async fn run(ctx: &mut ActionContext<'_>, args: Self::Args) -> ActionResult {
        let path = ctx.resolve(&args.path)?;
        let shown = ctx.display_path(&path);
        ctx.target(shown.clone());
        let text = match args.text {
            Value::String(s) => s,
            Value::Null => String::new(),
            other => serde_json::to_string_pretty(&other).unwrap_or_default(),
        };
        let bytes = text.into_bytes();
        let p = path.clone();
        let b = bytes.clone();
        tokio::task::spawn_blocking(move || write_atomic(&p, &b))
            .await
            .context("the write task failed")?
            .map_err(ActionError::permanent)?;
        let sha = sha256_hex(&bytes);
        ctx.detail("sha256", sha.clone());
        ctx.detail("size", bytes.len() as u64);
        Ok(json!({ "path": shown, "sha256": sha, "size": bytes.len() }))
    }
}

/// Arguments of `file.copy` and `file.move`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CopyArgs {
    /// Source file.
    pub from: String,
    /// Destination file (folders are created).
    pub to: String,
    /// Replace an existing destination (default true).
    #[serde(default = "yes")]
    pub overwrite: bool,
}

fn yes() -> bool {
    true
}

async fn copy_or_move(ctx: &mut ActionContext<'_>, args: CopyArgs, remove: bool) -> ActionResult {
    let from = ctx.resolve(&args.from)?;
    let to = ctx.resolve(&args.to)?;
    let (from_s, to_s) = (ctx.display_path(&from), ctx.display_path(&to));
    ctx.target(format!("{from_s} -> {to_s}"));
    let result = tokio::task::spawn_blocking(move || -> anyhow::Result<(String, u64)> {
        if !from.is_file() {
            anyhow::bail!("{} does not exist or is not a file", from.display());
        }
        if !args.overwrite && to.exists() {
            anyhow::bail!(
                "{} already exists (set `overwrite: true` to replace it)",
                to.display()
            );
        }
        let bytes =
            std::fs::read(&from).with_context(|| format!("cannot read {}", from.display()))?;
        write_atomic(&to, &bytes)?;
        if remove {
            std::fs::remove_file(&from)
                .with_context(|| format!("cannot remove {}", from.display()))?;
        }
        Ok((sha256_hex(&bytes), bytes.len() as u64))
    })
    .await
    .context("the copy task failed")?
    .map_err(ActionError::permanent)?;
    ctx.detail("sha256", result.0);
    ctx.detail("size", result.1);
    Ok(json!({ "path": to_s }))
}

/// Copies a file.
pub struct Copy;

impl Action for Copy {
    type Args = CopyArgs;
    const NAME: &'static str = "file.copy";
    const SUMMARY: &'static str = "Copy a file (the destination is written atomically).";
    const EXAMPLE: &'static str = "- file.copy: { from: a.txt, to: backup/a.txt }\n";
    const RESULT: &'static str = "{ path }";

    async fn run(ctx: &mut ActionContext<'_>, args: Self::Args) -> ActionResult {
        copy_or_move(ctx, args, false).await
    }
}

/// Moves a file.
pub struct Move;

impl Action for Move {
    type Args = CopyArgs;
    const NAME: &'static str = "file.move";
    const SUMMARY: &'static str = "Move a file.";
    const EXAMPLE: &'static str = "- file.move: { from: inbox/a.txt, to: done/a.txt }\n";
    const RESULT: &'static str = "{ path }";

    async fn run(ctx: &mut ActionContext<'_>, args: Self::Args) -> ActionResult {
        copy_or_move(ctx, args, true).await
    }
}

/// Arguments of `file.delete`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteArgs {
    /// The file to delete.
    pub path: String,
    /// Succeed when the file does not exist (default false).
    #[serde(default)]
    pub missing_ok: bool,
}

/// Deletes a file.
pub struct Delete;

impl Action for Delete {
    type Args = DeleteArgs;
    const NAME: &'static str = "file.delete";
    const SUMMARY: &'static str = "Delete a file.";
    const EXAMPLE: &'static str = "- file.delete: { path: out/old.txt, missing_ok: true }\n";
    const SHORTHAND: Option<&'static str> = Some("path");

    async fn run(ctx: &mut ActionContext<'_>, args: Self::Args) -> ActionResult {
        let path = ctx.resolve(&args.path)?;
        let shown = ctx.display_path(&path);
        ctx.target(shown.clone());
        match tokio::fs::metadata(&path).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if args.missing_ok {
                    ctx.detail("existed", false);
                    return Ok(Value::Null);
                }
                return Err(ActionError::permanent(anyhow::anyhow!(
                    "cannot delete {shown}: it does not exist"
                )));
            }
            Err(e) => {
                return Err(ActionError::permanent(anyhow::anyhow!(
                    "cannot delete {shown}: {e}"
                )));
            }
            Ok(_) => {}
        }
        let (sha, size) = crate::fsutil::sha256_file(&path).map_err(ActionError::permanent)?;
        tokio::fs::remove_file(&path)
            .await
            .with_context(|| format!("cannot delete {shown}"))
            .map_err(ActionError::permanent)?;
        ctx.detail("existed", true);
        ctx.detail("sha256", sha);
        ctx.detail("size", size);
        Ok(Value::Null)
    }
}

/// Arguments of `file.list`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// A glob like `inbox/*.csv` or `exports/**/*.xlsx`.
    pub glob: String,
}

/// Lists files matching a glob, sorted.
pub struct List;

impl Action for List {
    type Args = ListArgs;
    const NAME: &'static str = "file.list";
    const SUMMARY: &'static str = "List files matching a glob (sorted).";
    const EXAMPLE: &'static str = "- file.list: \"fixtures/*.txt\"\n  save_as: files\n";
    const SHORTHAND: Option<&'static str> = Some("glob");
    const RESULT: &'static str = "list of paths";

    async fn run(ctx: &mut ActionContext<'_>, args: Self::Args) -> ActionResult {
        ctx.target(args.glob.clone());
        let absolute = Path::new(&args.glob).is_absolute();
        let pattern = ctx.resolve(&args.glob)?.display().to_string();
        let paths = glob::glob(&pattern).map_err(|e| {
            ActionError::permanent(anyhow::anyhow!("invalid glob `{}`: {e}", args.glob))
        })?;
        let mut found: Vec<PathBuf> = paths
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        let shown: Vec<Value> = found
            .iter()
            .map(|p| {
                if absolute {
                    Value::from(p.display().to_string())
                } else {
                    Value::from(ctx.display_path(p))
                }
            })
            .collect();
        ctx.detail("count", shown.len() as u64);
        Ok(Value::Array(shown))
    }
}

/// Arguments of `file.exists`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExistsArgs {
    /// The path to test.
    pub path: String,
}

/// Tells whether a file or folder exists.
pub struct Exists;

impl Action for Exists {
    type Args = ExistsArgs;
    const NAME: &'static str = "file.exists";
    const SUMMARY: &'static str = "Tell whether a file or folder exists.";
    const EXAMPLE: &'static str = "- file.exists: out/report.xlsx\n  save_as: have_report\n";
    const SHORTHAND: Option<&'static str> = Some("path");
    const RESULT: &'static str = "true or false";

    async fn run(ctx: &mut ActionContext<'_>, args: Self::Args) -> ActionResult {
        let path = ctx.resolve(&args.path)?;
        let shown = ctx.display_path(&path);
        ctx.target(shown);
        let exists = tokio::fs::try_exists(&path).await.unwrap_or(false);
        ctx.detail("exists", exists);
        Ok(Value::Bool(exists))
    }
}
