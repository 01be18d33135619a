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
        .unwrap_or_else(account_name)
}

/// The name of this process's user from the password database (cron jobs and `env -i` have
/// no `$USER`), else `uid N`: a journal entry always says who.
fn account_name() -> String {
    // SAFETY: getuid cannot fail; getpwuid_r writes only into the buffers given, and `pwd`
    // is read only when it reports success with a non-null result pointing at it.
    unsafe {
        let uid = libc::getuid();
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc == 0 && !result.is_null() && !pwd.pw_name.is_null() {
            if let Ok(name) = std::ffi::CStr::from_ptr(pwd.pw_name).to_str() {
                if !name.is_empty() {
                    return name.to_string();
                }
            }
        }
        format!("uid {uid}")
    }
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

#[cfg(test)]
mod tests {
    #[test]
    fn without_user_variables_the_operator_is_the_accounts_name() {
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let listed = passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
        });
        let want = listed.unwrap_or_else(|| format!("uid {uid}"));
        assert_eq!(super::account_name(), want);
    }
}
