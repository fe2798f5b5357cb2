//! Playbooks: the YAML model, its loading with source positions, and validation.
//!
//! This module is pure: it reads text and reports problems, it never runs
//! anything. Action arguments are checked through the [`ActionCatalog`] trait,
//! which the action registry implements, so the playbook stays a leaf module.

pub mod checks;
mod diag;
mod duration;
mod include;
mod load;
mod model;
pub mod yaml;

pub use diag::{Diagnostic, Diagnostics};
pub use duration::parse_duration;
pub use load::{ActionCatalog, ArgProblem, derive_id, load_file, load_str};
pub use model::*;
