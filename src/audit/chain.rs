//! Hash format 1 (clerk's own canonical JSON), re-exported from the store,
//! which computes every event's hash when it appends it
//! ([`crate::store::chain`]).

pub use crate::store::chain::{GENESIS_HASH, canonical_json, event_hash, hashed_content};
