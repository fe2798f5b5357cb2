//! The workspace boundary: every path an action reads or writes must resolve
//! inside the workspace — after `..` and symlinks — or inside a folder listed
//! under `allowed_roots:` in clerk.yaml.
//!
//! Paths often come from data (`out/{{ row.name }}.pdf` with a cell holding
//! `../../etc/x`), so data must not choose where files go. The check resolves
//! the longest part of the path that exists with the file system (following
//! symlinks) and appends the rest, so a symlink inside the workspace pointing
//! elsewhere is caught too.

use std::path::{Path, PathBuf};

/// A path outside every allowed root.
#[derive(Debug, thiserror::Error)]
#[error(
    "path `{given}` resolves to {resolved}, outside the workspace {workspace}: actions read and write files only inside the workspace{extra} (add a folder to `allowed_roots` in clerk.yaml to allow it)"
)]
pub struct OutsideWorkspace {
    pub given: String,
    pub resolved: String,
    pub workspace: String,
    extra: String,
}

/// `path` (relative to `workspace` unless absolute), checked against the boundary.
pub fn check(
    workspace: &Path,
    allowed_roots: &[String],
    path: &str,
) -> Result<PathBuf, OutsideWorkspace> {
    let p = Path::new(path);
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        workspace.join(p)
    };
    let lexical = crate::fsutil::normalize(&joined);
    let resolved = real_path(&lexical);
    let mut roots = vec![real_path(&crate::fsutil::normalize(workspace))];
    for r in allowed_roots {
        let rp = Path::new(r);
        let abs = if rp.is_absolute() {
            rp.to_path_buf()
        } else {
            workspace.join(rp)
        };
        roots.push(real_path(&crate::fsutil::normalize(&abs)));
    }
    if roots.iter().any(|root| resolved.starts_with(root)) {
        return Ok(lexical);
    }
    let extra = if allowed_roots.is_empty() {
        String::new()
    } else {
        format!(" or {}", allowed_roots.join(", "))
    };
    Err(OutsideWorkspace {
        given: path.to_string(),
        resolved: resolved.display().to_string(),
        workspace: workspace.display().to_string(),
        extra,
    })
}

/// The path with symlinks resolved as far as it exists; the missing tail is
/// appended as written (it is already free of `..`).
fn real_path(p: &Path) -> PathBuf {
    let mut existing = p.to_path_buf();
    let mut tail = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&existing) {
            let mut out = real;
            for part in tail.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                tail.push(name);
                existing = parent.to_path_buf();
            }
            _ => return p.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_dot_and_symlinks_out_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(ws.join("out")).unwrap();
        let outside = dir.path().join("elsewhere");
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, ws.join("link")).unwrap();
        assert!(check(&ws, &[], "out/a.txt").is_ok());
        assert!(check(&ws, &[], "out/new/deeper/a.txt").is_ok());
        assert!(check(&ws, &[], "out/../b.txt").is_ok());
        let e = check(&ws, &[], "../../x").unwrap_err().to_string();
        assert!(e.contains("path `../../x`"), "{e}");
        assert!(e.contains("outside the workspace"), "{e}");
        assert!(check(&ws, &[], "/etc/passwd").is_err());
        assert!(check(&ws, &[], "link/a.txt").is_err(), "symlink out");
        let allowed = [outside.display().to_string()];
        assert!(check(&ws, &allowed, "link/a.txt").is_ok());
        assert!(check(&ws, &["../elsewhere".into()], "../elsewhere/z").is_ok());
    }
}
