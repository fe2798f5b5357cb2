//! The audit event model, re-exported from the store, which owns the event
//! row and the chain append ([`crate::store::event`]). Kept as a path so
//! `crate::audit::event::{NewEvent, AuditEvent}` still names them.

pub use crate::store::event::{AuditEvent, NewEvent, OptString};
