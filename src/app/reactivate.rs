//! `keywarden reactivate`: undo a deactivation keywarden made, and snooze the key so that the
//! daemon leaves it alone for a while. The same for an SSH key, a service-specific credential
//! or a signing certificate keywarden set Inactive (the journal says which kind an id is).
//!
//! The order is the safety argument: the journal must show keywarden deactivated the key
//! (else refuse, unless forced); a live read must show it Inactive (else refuse, unless
//! forced); the snooze is saved in the state before the key is touched (a key reactivated
//! without its snooze could be deactivated again by the next run); then UpdateAccessKey
//! (Active), a read-back, and a journal entry with the reason and the operator.
//!
//! A console password keywarden deleted comes back differently (`reactivate_password`).

use crate::core::history::Snooze;
use crate::core::journal::{JournalAction, JournalEntry, RunInfo};
use crate::core::model::{CredentialType, Timestamp};
use crate::core::policy::{Mode, Rule};
use crate::ports::{ActionJournal, KeyActions, StateStore};

#[derive(Debug, thiserror::Error)]
pub enum ReactivateError {
    /// Nothing was changed: the journal or IAM does not allow it (exit 4).
    #[error("refused: {0}")]
    Refused(String),
    /// Something failed on the way (exit 1); the message says what was already done.
    #[error("{0}")]
    Failed(String),
}

pub struct Request<'a> {
    pub access_key_id: &'a str,
    pub reason: &'a str,
    /// The snooze's end: the caller checks that the state can keep it (`timefmt::writable`).
    pub until: Timestamp,
    pub force: bool,
    pub operator: &'a str,
    pub now: Timestamp,
    pub run: &'a RunInfo,
}

/// What was done, for the command's output.
#[derive(Debug)]
pub struct Reactivated {
    pub account_id: String,
    pub user: String,
    pub until: Timestamp,
    /// False with `--force` on a key that was already Active (only the snooze was set).
    pub changed: bool,
}

pub async fn reactivate<A, S>(
    req: &Request<'_>,
    actions: &A,
    journal: &dyn ActionJournal,
    store: &S,
) -> Result<Reactivated, ReactivateError>
where
    A: KeyActions + Sync,
    S: StateStore + Sync,
{
    let read = journal
        .read()
        .await
        .map_err(|e| ReactivateError::Failed(e.to_string()))?;
    let deactivation = journaled_deactivation(&read.entries, req)?;
    let (account_id, user) = (deactivation.account_id.clone(), deactivation.user.clone());
    let target = Target {
        account_id: &account_id,
        user: &user,
        kind: deactivation.credential_type,
        id: req.access_key_id,
    };
    let active = current_status(actions, &target).await?;
    if active && !req.force {
        return Err(ReactivateError::Refused(format!(
            "{} of {user} is already Active; --force to snooze it anyway",
            req.access_key_id
        )));
    }

    let until = req.until;
    save_snooze(store, (&account_id, &user, req.access_key_id), req.reason, until).await?;
    let changed = !active;
    let mut entry = reactivation_entry(req, deactivation);
    if changed {
        entry.error = activate(actions, &target).await;
        if entry.error.is_some() {
            entry.outcome = "error".into();
        }
    }
    let journaled = journal.append(std::slice::from_ref(&entry)).await;
    if let Some(error) = entry.error {
        return Err(ReactivateError::Failed(format!(
            "could not reactivate {} of {user}: {error} (the snooze until {} is saved)",
            req.access_key_id,
            crate::sys::timefmt::format(&until)
        )));
    }
    journaled.map_err(|e| ReactivateError::Failed(format!("{} is Active again, but {e}", req.access_key_id)))?;
    restore_sessions(req, actions, journal, &entry).await?;
    Ok(Reactivated {
        account_id,
        user,
        until,
        changed,
    })
}

/// The journal's newest deactivation of the key, which names its account and user; refused
/// when there is none, or (unless forced) when the key's newest entry is not a deactivation
/// keywarden made.
fn journaled_deactivation<'e>(
    entries: &'e [JournalEntry],
    req: &Request<'_>,
) -> Result<&'e JournalEntry, ReactivateError> {
    let Some(deactivation) = entries
        .iter()
        .rev()
        .find(|e| e.access_key_id == req.access_key_id && e.action == JournalAction::Deactivate)
    else {
        let deleted_password = entries
            .iter()
            .any(|e| e.action == JournalAction::DeleteLoginProfile && e.user == req.access_key_id);
        let hint = if deleted_password {
            " (keywarden deleted the console password of a user of that name: reactivate it with --password)"
        } else {
            ""
        };
        return Err(ReactivateError::Refused(format!(
            "{} is not in the action journal: keywarden never acted on it, and it cannot tell which account and user it belongs to{hint}",
            req.access_key_id
        )));
    };
    confirmed(entries, deactivation, req.force)?;
    Ok(deactivation)
}

/// Refused (unless forced) when the credential's newest entry is not a deactivation (or a
/// login profile's deletion) keywarden made: someone may have acted on it since.
pub(super) fn confirmed(
    entries: &[JournalEntry],
    deactivation: &JournalEntry,
    force: bool,
) -> Result<(), ReactivateError> {
    let id = deactivation.access_key_id.as_str();
    let latest = crate::core::journal::latest_for(entries, id).unwrap_or(deactivation);
    if !latest.is_confirmed_deactivation() && !force {
        return Err(ReactivateError::Refused(format!(
            "the journal's last entry for {id} is \"{} {} ({})\" at {}, not a deactivation keywarden made; --force to reactivate anyway",
            latest.action.as_str(),
            latest.outcome,
            latest.mode,
            crate::sys::timefmt::format(&latest.time)
        )));
    }
    Ok(())
}

/// The journal entry of this reactivation, as a success; the caller fills in a failure.
pub(super) fn reactivation_entry(req: &Request<'_>, deactivation: &JournalEntry) -> JournalEntry {
    JournalEntry {
        time: req.now,
        action: JournalAction::Reactivate,
        mode: Mode::Enforce.as_str().to_string(),
        account_id: deactivation.account_id.clone(),
        user: deactivation.user.clone(),
        credential_type: deactivation.credential_type,
        access_key_id: deactivation.access_key_id.clone(),
        rules: deactivation.rules.clone(),
        first_seen: None,
        deadline: Some(req.until),
        outcome: "success".into(),
        error: None,
        reason: Some(req.reason.to_string()),
        operator: Some(req.operator.to_string()),
        new_access_key_id: None,
        secret_arn: None,
        login_profile: None,
        run: req.run.clone(),
    }
}

/// Undoing an exposed key's deactivation undoes its sessions' denial too
/// (`keywarden-revoke-sessions`), journaled when there was one to remove.
async fn restore_sessions<A: KeyActions + Sync>(
    req: &Request<'_>,
    actions: &A,
    journal: &dyn ActionJournal,
    reactivated: &JournalEntry,
) -> Result<(), ReactivateError> {
    if !reactivated.rules.contains(&Rule::ExposedKey) {
        return Ok(());
    }
    let (account_id, user) = (&reactivated.account_id, &reactivated.user);
    let error = match actions.restore_sessions(account_id, user).await {
        Ok(false) => return Ok(()),
        Ok(true) => None,
        Err(e) => Some(e.to_string()),
    };
    let entry = JournalEntry {
        action: JournalAction::RestoreSessions,
        outcome: if error.is_some() { "error" } else { "success" }.into(),
        error: error.clone(),
        reason: Some(format!(
            "{}: removed the inline policy keywarden-revoke-sessions from {user}",
            req.reason
        )),
        ..reactivated.clone()
    };
    journal
        .append(std::slice::from_ref(&entry))
        .await
        .map_err(|e| ReactivateError::Failed(format!("{} is Active again, but {e}", req.access_key_id)))?;
    match error {
        None => Ok(()),
        Some(e) => Err(ReactivateError::Failed(format!(
            "{} is Active again, but its user's sessions are still denied: {e} (delete the inline policy keywarden-revoke-sessions of {user} by hand)",
            req.access_key_id
        ))),
    }
}

/// The credential a reactivation is about.
struct Target<'a> {
    account_id: &'a str,
    user: &'a str,
    kind: CredentialType,
    id: &'a str,
}

/// UpdateAccessKey (or the kind's own update) to Active, then a read-back, which decides:
/// `None` when the credential is Active, else what went wrong.
async fn activate<A: KeyActions + Sync>(actions: &A, t: &Target<'_>) -> Option<String> {
    let call = match t.kind {
        CredentialType::AccessKey => actions.activate(t.account_id, t.user, t.id).await,
        kind => {
            let credential = (kind, t.id);
            actions
                .set_credential_status(t.account_id, t.user, credential, true)
                .await
        }
    };
    let after = current_status(actions, t).await;
    match (call.err(), after) {
        (_, Ok(true)) => None,
        (Some(e), _) => Some(e.to_string()),
        (None, Err(e)) => Some(e.to_string()),
        (None, Ok(false)) => Some(format!("the read-back shows the {} still Inactive", t.kind)),
    }
}

/// Whether the credential is Active now, read live.
async fn current_status<A: KeyActions + Sync>(actions: &A, t: &Target<'_>) -> Result<bool, ReactivateError> {
    let (account_id, user, id) = (t.account_id, t.user, t.id);
    let kinds: &[CredentialType] = match t.kind {
        CredentialType::AccessKey => &[],
        _ => std::slice::from_ref(&t.kind),
    };
    match actions.read_user_with(account_id, user, kinds).await {
        Ok(Some(u)) => u.is_active(t.kind, id).ok_or_else(|| {
            ReactivateError::Refused(format!("{id} no longer exists (user {user}, account {account_id})"))
        }),
        Ok(None) => Err(ReactivateError::Refused(format!(
            "user {user} no longer exists in account {account_id}"
        ))),
        Err(e) => Err(ReactivateError::Failed(format!(
            "cannot read {user} in account {account_id}: {}: {}",
            e.operation, e.message
        ))),
    }
}

/// The snooze of credential `id`, saved under the state lock (the daemon may be running).
pub(super) async fn save_snooze<S: StateStore + Sync>(
    store: &S,
    (account_id, user, id): (&str, &str, &str),
    reason: &str,
    until: Timestamp,
) -> Result<(), ReactivateError> {
    let failed = |e: crate::ports::StoreError| ReactivateError::Failed(format!("{e}; nothing was changed"));
    let _guard = store.lock().await.map_err(failed)?;
    let mut state = store.load().await.map_err(failed)?.unwrap_or_default();
    state.clear_failure(account_id, id);
    state.set_snooze(Snooze {
        account_id: account_id.to_string(),
        user: user.to_string(),
        access_key_id: id.to_string(),
        until,
        reason: reason.to_string(),
    });
    store.save(&state).await.map_err(failed)
}
