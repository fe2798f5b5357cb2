//! `clerk validate PATH...`: checks playbooks and bots, printing every problem.

use std::path::{Path, PathBuf};

use clap::Args;

use super::{Workspace, code, output::out};
use crate::actions::Registry;
use crate::playbook::{self, Diagnostics};

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Playbook or bot files, or folders to search for *.yaml / *.yml.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

pub fn validate(ws: &Workspace, args: ValidateArgs) -> anyhow::Result<u8> {
    let mut files = Vec::new();
    let mut diags = Diagnostics::default();
    for p in &args.paths {
        collect(p, &mut files, &mut diags);
    }
    let mut checked = 0;
    for file in &files {
        checked += 1;
        let problems = check_file(ws, file);
        diags.0.extend(problems.0);
    }
    if diags.is_empty() {
        out(&format!("ok: {checked} file(s) valid"));
        Ok(code::OK)
    } else {
        for d in &diags.0 {
            out(&d.to_string());
        }
        eprintln!("{} problem(s) in {} file(s) checked", diags.len(), checked);
        Ok(code::INVALID)
    }
}

/// Bots name a `playbook:`; everything else is a playbook.
pub fn is_bot_file(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| playbook::yaml::parse(&t).ok())
        .is_some_and(|n| n.get("playbook").is_some())
}

pub fn check_file(ws: &Workspace, file: &Path) -> Diagnostics {
    if is_bot_file(file) {
        crate::scheduler::validate_bot_file(file, &ws.root)
    } else {
        match playbook::load_file(file, &Registry) {
            Ok(_) => Diagnostics::default(),
            Err(d) => d,
        }
    }
}

fn collect(path: &Path, files: &mut Vec<PathBuf>, diags: &mut Diagnostics) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => {
                diags.push(path, Default::default(), format!("cannot read folder: {e}"));
                return;
            }
        };
        entries.sort();
        for e in entries {
            if e.is_dir() {
                collect(&e, files, diags);
            } else if matches!(e.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")) {
                files.push(e);
            }
        }
    } else if path.exists() {
        files.push(path.to_path_buf());
    } else {
        diags.push(
            path,
            crate::playbook::yaml::Pos { line: 1, col: 1 },
            "no such file or folder",
        );
    }
}
