//! What the acting commands say when they are done, and what a missing journal means: the
//! sentences people read on stdout and stderr, in one place (the JSON and table forms are
//! the other modules').

use std::path::Path;

use crate::core::model::Timestamp;
use crate::sys::timefmt;

/// `check-config`'s first line: which file was valid (or that there was none).
pub fn config_valid(source: Option<&Path>) -> String {
    match source {
        Some(p) => format!("# {}: configuration is valid\n", p.display()),
        None => "# no config file; defaults and environment are valid\n".to_string(),
    }
}

/// `reactivate`'s answer.
pub fn reactivated(access_key_id: &str, user: &str, account_id: &str, changed: bool, until: &Timestamp) -> String {
    let what = if changed { "reactivated;" } else { "already Active;" };
    format!(
        "{access_key_id} of {user} (account {account_id}) {what} snoozed until {}\n",
        timefmt::format(until)
    )
}

/// `reactivate --password`'s answer: where the temporary password is (never the password).
/// `secret`: the secret's name and ARN, `None` when nothing was handed over (`--force` on a
/// user that has a password again).
pub fn password_restored(user: &str, account_id: &str, secret: Option<(&str, &str)>, until: &Timestamp) -> String {
    let until = timefmt::format(until);
    match secret {
        Some((name, arn)) => format!(
            "{user} (account {account_id}) has a console password again: a temporary one, stored in secret {name} ({arn}), to be changed at first sign-in; snoozed until {until}\n"
        ),
        None => format!(
            "{user} (account {account_id}) already has a console password (not keywarden's); snoozed until {until}\n"
        ),
    }
}

/// `rotate`'s answer: where the new key is (never the secret itself) and what happens to the
/// old one.
pub fn rotated(
    user: &str,
    account_id: &str,
    new_key: Option<&str>,
    secret: &str,
    secret_arn: Option<&str>,
    old_key: &str,
) -> String {
    format!(
        "{user} (account {account_id}): new access key {} stored in secret {secret} ({}); the old key {old_key} stays active until the new one is used, then multiple_active_keys deactivates it after the grace period\n",
        new_key.unwrap_or("-"),
        secret_arn.unwrap_or("-"),
    )
}

/// `state import`'s answer.
/// What `keywarden usage --backfill` did.
pub fn backfilled(requests: u32, throttled: u32, recorded: u64, duplicates: u64, rejected: u64) -> String {
    format!(
        "backfill: {requests} LookupEvents request{} ({throttled} throttled and waited out), \
         {recorded} event{} counted, {duplicates} already counted, {rejected} rejected",
        if requests == 1 { "" } else { "s" },
        if recorded == 1 { "" } else { "s" }
    )
}

pub fn imported(
    findings: usize,
    failures: usize,
    snoozes: usize,
    file: &Path,
    entries: usize,
    journal: &Path,
) -> String {
    format!(
        "imported {findings} finding(s), {failures} failure(s), {snoozes} snooze(s) from {} and {entries} journal entries from {}\n",
        file.display(),
        journal.display()
    )
}

/// What a missing journal file means, naming the config that pointed at it.
pub fn no_journal(config: Option<&Path>, path: &Path) -> String {
    let config = config.map_or("no config file".to_string(), |p| p.display().to_string());
    format!(
        "there is no action journal at {} ({config}): keywarden has not acted with this configuration; is --config the one the daemon runs with?",
        path.display()
    )
}
