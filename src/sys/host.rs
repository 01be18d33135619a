//! Who is acting: this host's name and a fresh id per run, for the action journal.

use crate::core::journal::RunInfo;

/// The kernel's host name (what `hostname` prints); "unknown" when it cannot be read.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// A new run: a random id, this host, this build's version.
pub fn run_info() -> RunInfo {
    RunInfo {
        run_id: uuid::Uuid::new_v4().to_string(),
        host: hostname(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// Who runs a command: the user behind sudo, else the login user.
pub fn operator() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

/// Keeps this process out of core dumps (`PR_SET_DUMPABLE` 0) while it handles a new key's
/// secret: a crash must not write it to disk. Best effort: a failure is only logged.
pub fn no_core_dumps() {
    // SAFETY: prctl with PR_SET_DUMPABLE takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "could not turn core dumps off");
    }
}
