//! The versioned hash formats of the audit chain, re-exported from the store
//! ([`crate::store::format`], where the formats are documented): the store
//! hashes an event when it appends it; verify re-hashes with the same code.

pub use crate::store::format::{CURRENT, Fields, hash, jcs};
