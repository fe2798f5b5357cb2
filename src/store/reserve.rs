//! A little disk space set aside next to an SQLite store, so that a run that
//! fails because the disk is full can still be *recorded* as failed: the
//! reserve file is deleted, the run's end is written, and the reserve is made
//! again by the next clerk command that finds room. Without it, the run's end
//! cannot be written either and the run would stay `running`.

use std::path::PathBuf;

use super::Store;

/// Size of the reserve: room for a few transactions of the WAL.
const RESERVE_BYTES: usize = 1 << 20;

impl Store {
    /// `<db>.reserve` for an SQLite file store; `None` for PostgreSQL and memory.
    fn reserve_path(&self) -> Option<PathBuf> {
        let url = self.url();
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next()?;
        if path.is_empty() || path.contains(":memory:") {
            return None;
        }
        Some(PathBuf::from(format!("{path}.reserve")))
    }

    /// Makes sure the reserve exists (quietly does nothing when there is no room).
    pub fn ensure_space_reserve(&self) {
        let Some(p) = self.reserve_path() else { return };
        if p.metadata()
            .is_ok_and(|m| m.len() as usize >= RESERVE_BYTES)
        {
            return;
        }
        if std::fs::write(&p, vec![0u8; RESERVE_BYTES]).is_err() {
            let _ = std::fs::remove_file(&p);
        }
    }

    /// Frees the reserve; true if there was one.
    pub fn release_space_reserve(&self) -> bool {
        match self.reserve_path() {
            Some(p) => std::fs::remove_file(p).is_ok(),
            None => false,
        }
    }
}
