//! `keywarden reactivate USER --password`: undo keywarden's deletion of a console password
//! (`rules.unused_password` with `action = "delete_login_profile"`). A deleted password cannot
//! be restored; the user gets a new login profile with a random temporary password that must
//! be changed at first sign-in, handed over in Secrets Manager as `rotate` hands over a key.
//!
//! The order is the safety argument:
//! - the journal must show keywarden deleted the user's login profile (else refuse, unless
//!   forced), which also names the account;
//! - a live read must show no login profile (one made since, by a person, is theirs: refuse,
//!   unless forced, which then only snoozes);
//! - the password is stored in Secrets Manager *before* it exists in IAM: keywarden makes it,
//!   so it can be, and a password nobody can receive never exists. A hand-over that does not
//!   work (no access to Secrets Manager, no endpoint) is a refusal: nothing changed;
//! - the snooze is saved, then CreateLoginProfile (reset required), a read-back, and the
//!   journal entry with the secret's ARN, never the password. The password is never printed
//!   or logged, and its buffer is wiped when dropped.

use crate::app::reactivate::{confirmed, reactivation_entry, save_snooze, ReactivateError, Request};
use crate::core::journal::{JournalAction, JournalEntry};
use crate::core::model::CredentialType;
use crate::ports::{ActionJournal, KeyActions, Rotator, StateStore};

/// What was done, for the command's output.
#[derive(Debug)]
pub struct Restored {
    pub account_id: String,
    pub until: crate::core::model::Timestamp,
    /// False with `--force` on a user that has a login profile again (only the snooze was set).
    pub changed: bool,
    pub secret_name: String,
    /// `None` when nothing was handed over.
    pub secret_arn: Option<String>,
}

/// One password's reactivation, in the order the module doc gives. `req.access_key_id` is
/// the user's name; `secret_prefix` names the secret (`<prefix><account_id>/<user>/password`).
pub async fn reactivate<A, S>(
    req: &Request<'_>,
    secret_prefix: &str,
    actions: &A,
    rotator: &dyn Rotator,
    journal: &dyn ActionJournal,
    store: &S,
) -> Result<Restored, ReactivateError>
where
    A: KeyActions + Sync,
    S: StateStore + Sync,
{
    let user = req.access_key_id;
    let read = journal
        .read()
        .await
        .map_err(|e| ReactivateError::Failed(e.to_string()))?;
    let deletion = journaled_deletion(&read.entries, user)?;
    confirmed(&read.entries, deletion, req.force)?;
    let account_id = deletion.account_id.clone();
    let arn = deletion.access_key_id.clone();
    let secret_name = format!(
        "{}/password",
        crate::core::rotation::secret_name(secret_prefix, &account_id, user)
    );
    let until = req.until;
    let mut done = Restored {
        account_id,
        until,
        changed: false,
        secret_name,
        secret_arn: None,
    };
    if has_login_profile(actions, &done.account_id, user).await? {
        if !req.force {
            return Err(ReactivateError::Refused(format!(
                "{user} (account {}) has a console password again, made after keywarden deleted it: it is theirs, nothing was changed; --force to snooze it anyway",
                done.account_id
            )));
        }
        save_snooze(store, (&done.account_id, user, &arn), req.reason, until).await?;
        return Ok(done);
    }
    let password = crate::sys::password::temporary().map_err(ReactivateError::Failed)?;
    let stored = rotator
        .store_password(&done.account_id, &done.secret_name, user, &password)
        .await;
    let secret_arn = stored.map_err(|e| {
        ReactivateError::Refused(format!(
            "the temporary password could not be handed over in Secrets Manager as {} ({e}): no login profile was made, nothing was changed",
            done.secret_name
        ))
    })?;
    save_snooze(store, (&done.account_id, user, &arn), req.reason, until).await?;
    let mut entry = JournalEntry {
        secret_arn: Some(secret_arn.clone()),
        ..reactivation_entry(req, deletion)
    };
    entry.error = create(actions, &done.account_id, user, &password).await;
    drop(password);
    if entry.error.is_some() {
        entry.outcome = "error".into();
    }
    let journaled = journal.append(std::slice::from_ref(&entry)).await;
    if let Some(error) = entry.error {
        return Err(ReactivateError::Failed(format!(
            "could not give {user} a console password: {error} (the secret {secret_arn} holds a password that was never set; the snooze until {} is saved)",
            crate::sys::timefmt::format(&until)
        )));
    }
    journaled.map_err(|e| ReactivateError::Failed(format!("{user} has a console password again, but {e}")))?;
    done.changed = true;
    done.secret_arn = Some(secret_arn);
    Ok(done)
}

/// The journal's newest deletion of `user`'s login profile.
fn journaled_deletion<'e>(entries: &'e [JournalEntry], user: &str) -> Result<&'e JournalEntry, ReactivateError> {
    entries
        .iter()
        .rev()
        .find(|e| e.action == JournalAction::DeleteLoginProfile && e.user == user)
        .ok_or_else(|| {
            ReactivateError::Refused(format!(
                "the action journal has no deletion of {user}'s console password: keywarden never deleted it, and it cannot tell which account {user} is in"
            ))
        })
}

/// Whether the user has a login profile now, read live.
async fn has_login_profile<A: KeyActions + Sync>(
    actions: &A,
    account_id: &str,
    user: &str,
) -> Result<bool, ReactivateError> {
    let kinds = [CredentialType::Password];
    match actions.read_user_with(account_id, user, &kinds).await {
        Ok(Some(u)) => Ok(u.credentials.iter().any(|c| c.kind == CredentialType::Password)),
        Ok(None) => Err(ReactivateError::Refused(format!(
            "user {user} no longer exists in account {account_id}"
        ))),
        Err(e) => Err(ReactivateError::Failed(format!(
            "cannot read {user} in account {account_id}: {}: {}",
            e.operation, e.message
        ))),
    }
}

/// CreateLoginProfile, then a read-back, which decides: `None` when the user has a login
/// profile, else what went wrong.
async fn create<A: KeyActions + Sync>(actions: &A, account_id: &str, user: &str, password: &str) -> Option<String> {
    let call = actions.create_login_profile(account_id, user, password).await;
    if let Some(e) = call.as_ref().err().filter(|e| e.is("EntityAlreadyExists")) {
        return Some(format!("{e} (made meanwhile by someone else: it is theirs)"));
    }
    match (call.err(), has_login_profile(actions, account_id, user).await) {
        (_, Ok(true)) => None,
        (Some(e), _) => Some(e.to_string()),
        (None, Err(e)) => Some(e.to_string()),
        (None, Ok(false)) => Some("the read-back shows no login profile".into()),
    }
}
