//! Who this process is, and whether another process is provably gone.
//!
//! A process is identified by its pid *and* its start time (field 22 of
//! `/proc/PID/stat`, in clock ticks since boot): a pid is reused after a
//! process dies, but never with the same start time. Together with the host
//! name this tells a dead `clerk run` (or the owner of a browser profile
//! folder) from a live one; a random instance id, chosen once per process,
//! names the process in the store.

use std::path::Path;
use std::sync::OnceLock;

/// This process's random instance id (a ULID chosen at first use, i.e. at start).
pub fn instance_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| ulid::Ulid::new().to_string())
}

/// The host name set by [`set_hostname`] (`clerk serve --hostname`), if any.
static HOSTNAME_OVERRIDE: OnceLock<String> = OnceLock::new();

/// Names this process's host for people ([`display_hostname`]: logs,
/// `clerk workers`) instead of the kernel's host name: several `clerk serve` on one machine imitating
/// several machines (tests), or a container's meaningless name. Only the
/// first call counts. Identity in the store is the instance id, never this.
pub fn set_hostname(name: &str) {
    let _ = HOSTNAME_OVERRIDE.set(name.to_string());
}

/// The host name to show people: the [`set_hostname`] override, else
/// [`hostname`].
pub fn display_hostname() -> String {
    HOSTNAME_OVERRIDE.get().cloned().unwrap_or_else(hostname)
}

/// The host name as the kernel reports it (what liveness checks compare).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The start time of process `pid` (clock ticks after boot), if it exists
/// and is not a zombie.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    // Field 3 (state) is index 0 here, so field 22 (starttime) is index 19.
    fields.get(19)?.parse().ok()
}

/// This process: (pid, start time).
pub fn me() -> (u32, u64) {
    let pid = std::process::id();
    (pid, start_time(pid).unwrap_or(0))
}

/// Whether the process (pid, start time) on *this* host is provably gone: no
/// such pid, or the pid now belongs to a process started at another time.
pub fn is_gone(pid: u32, started: u64) -> bool {
    match start_time(pid) {
        None => true,
        Some(t) => started != 0 && t != started,
    }
}

/// Marks a private temp folder as owned by this process (`owner` file:
/// `pid start_time`), for [`sweep_stale_temp_dirs`].
pub fn write_owner(dir: &Path) -> std::io::Result<()> {
    let (pid, started) = me();
    std::fs::write(dir.join(".clerk-owner"), format!("{pid} {started}\n"))
}

/// Removes `<tmp>/<prefix>*` folders whose owner process is gone (a run killed
/// by SIGKILL cannot clean up after itself). Folders of live processes, and
/// folders without an owner file (written by something else), are left alone.
/// Returns how many were removed.
pub fn sweep_stale_temp_dirs(prefix: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(prefix) {
            continue;
        }
        let path = entry.path();
        let Ok(owner) = std::fs::read_to_string(path.join(".clerk-owner")) else {
            continue;
        };
        let mut parts = owner.split_whitespace();
        let (Some(Ok(pid)), Some(Ok(started))) = (
            parts.next().map(str::parse::<u32>),
            parts.next().map(str::parse::<u64>),
        ) else {
            continue;
        };
        if is_gone(pid, started) && std::fs::remove_dir_all(&path).is_ok() {
            tracing::info!(folder = %path.display(), "removed the browser profile of a process that is gone");
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_live_and_gone_processes() {
        let (pid, started) = me();
        assert!(started > 0);
        assert!(!is_gone(pid, started));
        assert!(is_gone(pid, started + 1), "same pid, other start time");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let cpid = child.id();
        child.wait().unwrap();
        assert!(is_gone(cpid, 1));
        assert_eq!(instance_id(), instance_id());
        assert!(!hostname().is_empty());
    }
}
