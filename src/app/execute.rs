//! Acting on a plan: for each due key, a fresh read of its user, the same decision on the
//! fresh data, then (in enforce mode) UpdateAccessKey(Status=Inactive) and a read-back, all
//! through the [`KeyActions`] port. The cap counts keys deactivated (or, in dry-run, that would
//! be); failed attempts take no slot and back off (see `core::plan`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::core::history::State;
use crate::core::journal::{JournalEntry, RunInfo};
use crate::core::model::{AccountInventory, CredentialType, Timestamp};
use crate::core::plan::{is_due, Candidate, Outcome, OutcomeKind};
use crate::core::policy::{Mode, Policy};
use crate::core::rules;
use crate::ports::{ActionJournal, Clock, IntentLog, KeyActions, Leadership, Refusal, StoreError};

/// What a fresh decision needs: the same policy, first-seen times and instant as the audit.
pub struct Context<'a> {
    pub policy: &'a Policy,
    /// First-seen times (grace periods) and failed attempts (backoff).
    pub state: &'a State,
    /// The run's instant: every decision (deadlines, backoff) is made at it.
    pub now: Timestamp,
    /// When each attempt happened, for its journal entry: a run can last minutes, and an
    /// operator's reactivation in the meantime must not look newer than a refusal it caused.
    pub clock: &'a (dyn Clock + Sync),
    pub mode: Mode,
    /// Keys deactivated (or, in dry-run, that would be) per run.
    pub cap: usize,
    /// The key keywarden signs with: never touched, whatever a rule says.
    pub own_access_key_id: Option<&'a str>,
    /// Checked between keys: a stop request ends the run after the key in hand.
    pub stop: &'a AtomicBool,
    /// Every attempt is appended here before the next key is touched.
    pub journal: &'a dyn ActionJournal,
    pub run: &'a RunInfo,
    /// Asked right before each UpdateAccessKey (the leader lease, a snooze set meanwhile).
    pub leader: &'a dyn Leadership,
    /// Told right before each UpdateAccessKey, and once its journal entry is written.
    pub intents: &'a dyn IntentLog,
}

/// What a run did, and what the cap left for later (per account).
#[derive(Debug, Default)]
pub struct Executed {
    pub outcomes: Vec<Outcome>,
    pub held_back: BTreeMap<String, usize>,
    /// The journal could not be written: the run stopped after the action it could not record.
    pub journal_error: Option<StoreError>,
    /// The leader lease was lost (or ran short) during the run: it stopped before the key
    /// it was about to touch.
    pub lease_lost: Option<String>,
}

pub async fn execute(due: &[Candidate], ctx: &Context<'_>, actions: &impl KeyActions) -> Executed {
    let mut run = Executed::default();
    let mut acted = 0;
    for c in due {
        if ctx.stop.load(Ordering::Acquire) {
            tracing::info!("stop requested; remaining deactivations wait for the next run");
            break;
        }
        if acted >= ctx.cap {
            *run.held_back.entry(c.account_id.clone()).or_insert(0) += 1;
            continue;
        }
        let outcome = match ctx.state.failure(&c.account_id, &c.access_key_id) {
            Some(f) if f.next_attempt > ctx.now => Outcome {
                candidate: c.clone(),
                kind: OutcomeKind::Backoff,
                error: Some(format!(
                    "{} failed attempt(s), last: {}; next attempt after {}",
                    f.attempts,
                    f.last_error,
                    crate::sys::timefmt::format(&f.next_attempt)
                )),
                login_profile: None,
                refused: false,
                open: false,
            },
            _ => match decide_and_act(c, ctx, actions).await {
                Ok(o) => o,
                Err(why) => {
                    tracing::warn!(error = %why, "enforcement stopped before touching the key; the remaining deactivations wait for the next run (of whichever instance leads)");
                    run.lease_lost = Some(why);
                    break;
                }
            },
        };
        // An update sent whose effect is unknown (`open`) counts: it probably took effect, and
        // the cap bounds what a run may have changed, not what it could confirm.
        match outcome.kind {
            OutcomeKind::Success | OutcomeKind::DryRun => acted += 1,
            OutcomeKind::Error if outcome.open => acted += 1,
            OutcomeKind::Error | OutcomeKind::NoLongerDue | OutcomeKind::Backoff => {}
        }
        log(&outcome, ctx.mode);
        // A dry-run decision already journaled for this grace period is not journaled again.
        let repeated = outcome.kind == OutcomeKind::DryRun
            && ctx.state.dry_run_noted(&c.account_id, &c.access_key_id) == Some(c.first_seen);
        let entry = JournalEntry::of_outcome(&outcome, ctx.mode, ctx.run, ctx.clock.now()).filter(|_| !repeated);
        let open = outcome.open;
        run.outcomes.push(outcome);
        if let Some(entry) = entry {
            // An action nobody can find later cannot be undone: no record, no further action.
            if let Err(e) = ctx.journal.append(std::slice::from_ref(&entry)).await {
                tracing::error!(error = %e, "cannot write the action journal; the remaining deactivations wait for the next run");
                run.journal_error = Some(e);
                break;
            }
            // An open outcome keeps its intent: the next run settles it from IAM.
            if !open {
                ctx.intents.end(&c.account_id, &c.access_key_id).await;
            }
            if let Err(e) = revoke_sessions(&entry, ctx, actions).await {
                tracing::error!(error = %e, "cannot write the action journal; the remaining deactivations wait for the next run");
                run.journal_error = Some(e);
                break;
            }
        }
    }
    run
}

/// After an exposed key's deactivation (`rules.exposed_key.revoke_sessions`): deny the
/// user's temporary credentials issued before now, and journal it. A failure is journaled
/// and logged, and ends nothing: the key itself is already inactive.
async fn revoke_sessions(
    deactivated: &JournalEntry,
    ctx: &Context<'_>,
    actions: &impl KeyActions,
) -> Result<(), StoreError> {
    let wanted = ctx.policy.revoke_sessions
        && deactivated.is_confirmed_deactivation()
        && deactivated.rules.contains(&crate::core::policy::Rule::ExposedKey);
    if !wanted {
        return Ok(());
    }
    let before = ctx.clock.now();
    let error = actions
        .revoke_sessions(&deactivated.account_id, &deactivated.user, before)
        .await
        .err()
        .map(|e| e.to_string());
    match &error {
        None => tracing::warn!(account_id = %deactivated.account_id, user = %deactivated.user,
            access_key_id = %deactivated.access_key_id, "exposed key's user: older sessions denied"),
        Some(e) => tracing::error!(account_id = %deactivated.account_id, user = %deactivated.user,
            access_key_id = %deactivated.access_key_id, error = %e, "could not deny the exposed key's sessions"),
    }
    let entry = JournalEntry::revoked_sessions(deactivated, before, error);
    ctx.journal.append(std::slice::from_ref(&entry)).await
}

/// `Err`: the lease is lost; nothing was touched and the run must end.
async fn decide_and_act(c: &Candidate, ctx: &Context<'_>, actions: &impl KeyActions) -> Result<Outcome, String> {
    let done = |(kind, error): (OutcomeKind, Option<String>)| Outcome {
        candidate: c.clone(),
        kind,
        error,
        login_profile: None,
        refused: false,
        open: false,
    };

    // The rules already never plan it; this is the one place every action passes.
    if ctx.own_access_key_id == Some(c.access_key_id.as_str()) {
        return Ok(done((
            OutcomeKind::NoLongerDue,
            Some("keywarden's own access key is never deactivated".into()),
        )));
    }
    if let Err(not) = still_due(c, ctx, actions).await {
        return Ok(done(not));
    }
    if ctx.mode == Mode::DryRun {
        return Ok(done((OutcomeKind::DryRun, None)));
    }
    match ctx.leader.may_act(&c.account_id, &c.access_key_id).await {
        Ok(()) => {}
        Err(Refusal::Snoozed(why)) => return Ok(done((OutcomeKind::NoLongerDue, Some(why)))),
        Err(Refusal::NotLeader(why)) => return Err(why),
    }
    // Saved before the request leaves: if this process dies before the journal entry is
    // written, the next run still finds out and records what happened.
    let intent = JournalEntry::intent(c, ctx.run, ctx.clock.now());
    if let Err(e) = ctx.intents.begin(&intent).await {
        return Err(format!("cannot record the deactivation before sending it: {e}"));
    }
    let mut login_profile = None;
    let call = match c.credential_type {
        CredentialType::AccessKey => actions.deactivate(&c.account_id, &c.user, &c.access_key_id).await,
        CredentialType::Password => match actions.delete_login_profile(&c.account_id, &c.user).await {
            Ok(settings) => {
                login_profile = Some(settings);
                Ok(())
            }
            Err(e) => Err(e),
        },
        kind => {
            let credential = (kind, c.access_key_id.as_str());
            actions
                .set_credential_status(&c.account_id, &c.user, credential, false)
                .await
        }
    };
    if let Err(e) = &call {
        // Deleted meanwhile, by someone else: not keywarden's deletion to journal as one.
        if c.credential_type == CredentialType::Password && e.is("NoSuchEntity") {
            return Ok(done((
                OutcomeKind::NoLongerDue,
                Some(format!("the login profile no longer exists: {e}")),
            )));
        }
    }
    let refused = call
        .as_ref()
        .err()
        .is_some_and(crate::core::model::ServiceError::refused);
    let (kind, error, open) = read_back(c, actions, call.err()).await;
    Ok(Outcome {
        login_profile,
        refused,
        open,
        ..done((kind, error))
    })
}

/// The kinds beyond access keys a fresh read of `c`'s user needs.
fn kinds_of(c: &Candidate) -> &'static [CredentialType] {
    match c.credential_type {
        CredentialType::AccessKey => &[],
        CredentialType::Password => &[CredentialType::Password],
        CredentialType::SshPublicKey => &[CredentialType::SshPublicKey],
        CredentialType::ServiceSpecificCredential => &[CredentialType::ServiceSpecificCredential],
        CredentialType::SigningCertificate => &[CredentialType::SigningCertificate],
    }
}

/// Whether a fresh read shows `c`'s credential switched off (`None`: it no longer exists).
/// A password is deleted, not switched off: gone is done, present is not.
fn status_of(c: &Candidate, u: &crate::core::model::User) -> Option<bool> {
    let found = u.is_active(c.credential_type, &c.access_key_id);
    match c.credential_type {
        CredentialType::Password => Some(found.is_none()),
        _ => found.map(|active| !active),
    }
}

/// A fresh read of the candidate's user and the rules again: `Err` with the outcome when
/// the key is no longer due (or the read failed).
async fn still_due(
    c: &Candidate,
    ctx: &Context<'_>,
    actions: &impl KeyActions,
) -> Result<(), (OutcomeKind, Option<String>)> {
    let fresh = match actions.read_user_with(&c.account_id, &c.user, kinds_of(c)).await {
        Ok(Some(u)) => u,
        Ok(None) => return Err((OutcomeKind::NoLongerDue, Some("the user no longer exists".into()))),
        Err(e) => {
            return Err((
                OutcomeKind::Error,
                Some(format!("re-read failed: {}: {}", e.operation, e.message)),
            ))
        }
    };
    let mut inv = AccountInventory {
        account_id: c.account_id.clone(),
        users: vec![fresh],
        own_access_key_id: ctx.own_access_key_id.map(str::to_string),
        ..Default::default()
    };
    // The exposure was read live this run (the quarantine policies, which a Health event
    // only narrows): the fresh read re-checks the key, not the exposure.
    if c.rules.contains(&crate::core::policy::Rule::ExposedKey) {
        inv.exposure
            .quarantined
            .insert(c.user.clone(), "(read earlier in this run)".into());
        inv.exposure.reported_keys.insert(c.access_key_id.clone());
    }
    let due = rules::evaluate(&inv, ctx.policy, ctx.state, ctx.now)
        .iter()
        .any(|f| f.access_key_id == c.access_key_id && is_due(f, ctx.now));
    if due {
        Ok(())
    } else {
        Err((OutcomeKind::NoLongerDue, None))
    }
}

/// The outcome of a sent UpdateAccessKey is what a read-back shows, even after an error: a
/// response lost on the way back (a dropped connection, a truncated body) may hide an update
/// that was applied. The bool: the outcome is open (the read-back failed), for the next run.
async fn read_back(
    c: &Candidate,
    actions: &impl KeyActions,
    call: Option<crate::core::model::ServiceError>,
) -> (OutcomeKind, Option<String>, bool) {
    let because = |what: String| match &call {
        Some(e) => format!("{e} ({what})"),
        None => what,
    };
    let settled = match actions.read_user_with(&c.account_id, &c.user, kinds_of(c)).await {
        Ok(Some(u)) => match status_of(c, &u) {
            Some(true) => (
                OutcomeKind::Success,
                call.as_ref().map(|e| match c.credential_type {
                    CredentialType::AccessKey => {
                        format!("UpdateAccessKey reported an error but the key is inactive: {e}")
                    }
                    CredentialType::Password => {
                        format!("DeleteLoginProfile reported an error but the login profile is gone: {e}")
                    }
                    kind => format!("the update reported an error but the {kind} is inactive: {e}"),
                }),
            ),
            Some(false) => (
                OutcomeKind::Error,
                Some(because(match c.credential_type {
                    CredentialType::AccessKey => "read-back shows the key still active".into(),
                    CredentialType::Password => "read-back shows the login profile still there".into(),
                    kind => format!("read-back shows the {kind} still active"),
                })),
            ),
            // Deleted meanwhile (by its owner, or another tool): nothing left to do.
            None => (
                OutcomeKind::NoLongerDue,
                Some(because("the key no longer exists".into())),
            ),
        },
        Ok(None) => (
            OutcomeKind::NoLongerDue,
            Some(because("the user no longer exists".into())),
        ),
        Err(e) => {
            return (
                OutcomeKind::Error,
                Some(because(format!(
                    "read-back failed: {}: {}; the next run settles it from what IAM shows",
                    e.operation, e.message
                ))),
                true,
            )
        }
    };
    (settled.0, settled.1, false)
}

fn log(o: &Outcome, mode: Mode) {
    let c = &o.candidate;
    let rules: Vec<&str> = c.rules.iter().map(|r| r.as_str()).collect();
    let rules = rules.join(",");
    let first_seen = crate::sys::timefmt::format(&c.first_seen);
    let deadline = crate::sys::timefmt::format(&c.deadline);
    let outcome = o.kind.as_str();
    let error = o.error.as_deref().unwrap_or("");
    macro_rules! event {
        ($level:ident, $msg:literal) => {
            tracing::$level!(
                account_id = %c.account_id,
                user = %c.user,
                access_key_id = %c.access_key_id,
                credential_type = c.credential_type.as_str(),
                owner = %c.owner,
                rule = %rules,
                first_seen = %first_seen,
                deadline = %deadline,
                outcome,
                error,
                mode = mode.as_str(),
                $msg
            )
        };
    }
    match o.kind {
        OutcomeKind::Success => event!(warn, "deactivated access key"),
        OutcomeKind::DryRun => event!(info, "would deactivate access key (dry-run)"),
        OutcomeKind::Error => event!(error, "deactivation failed; retried after a backoff"),
        OutcomeKind::NoLongerDue => event!(info, "finding no longer holds on fresh data; key left alone"),
        OutcomeKind::Backoff => event!(warn, "deactivation failed before; waiting for its backoff"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{AccessKey, Credential, CredentialStatus, KeyStatus, ReadError, ServiceError, User};
    use crate::core::plan::record_outcomes;
    use crate::core::policy::{Action, Rule, RulePolicy, Rules};
    use chrono::{TimeDelta, TimeZone};
    use std::sync::Mutex;

    fn t0() -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
    }

    /// A clock one minute further at each reading, from a minute after `t0`.
    #[derive(Default)]
    struct Ticking(std::sync::atomic::AtomicI64);

    impl Clock for Ticking {
        fn now(&self) -> Timestamp {
            t0() + TimeDelta::minutes(self.0.fetch_add(1, Ordering::Relaxed) + 1)
        }
    }

    /// In-memory IAM, recording calls: one user `u`, or several by name (`users`).
    struct Fake {
        user: Mutex<User>,
        /// Users other than `u`, for runs over several keys.
        users: Mutex<Vec<User>>,
        /// Updates of these keys are denied.
        denied: Vec<String>,
        fail_update: bool,
        /// With `fail_update`: the change is applied, only the answer is an error.
        applied_anyway: bool,
        /// A user read fails once one of its keys is inactive (a read-back that times out).
        blind_after_update: bool,
        calls: Mutex<Vec<String>>,
    }

    impl KeyActions for Fake {
        async fn read_user(&self, _: &str, name: &str) -> Result<Option<User>, ReadError> {
            self.calls.lock().unwrap().push("read".into());
            if name == "u" {
                return Ok(Some(self.user.lock().unwrap().clone()));
            }
            Ok(self.users.lock().unwrap().iter().find(|u| u.name == name).cloned())
        }
        async fn read_user_with(
            &self,
            _: &str,
            name: &str,
            kinds: &[CredentialType],
        ) -> Result<Option<User>, ReadError> {
            let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
            self.calls
                .lock()
                .unwrap()
                .push(format!("read {}", kinds.join(" ")).trim().to_string());
            let user = match name {
                "u" => Some(self.user.lock().unwrap().clone()),
                _ => self.users.lock().unwrap().iter().find(|u| u.name == name).cloned(),
            };
            if self.blind_after_update && user.as_ref().is_some_and(|u| u.keys.iter().any(|k| !k.is_active())) {
                return Err(ReadError {
                    account_id: "1".into(),
                    user: Some(name.into()),
                    operation: "ListAccessKeys".into(),
                    message: "no answer in time".into(),
                    code: None,
                });
            }
            Ok(user.map(|mut u| {
                u.credentials.retain(|c| kinds.contains(&c.kind.as_str()));
                u
            }))
        }
        async fn set_credential_status(
            &self,
            _: &str,
            _: &str,
            (kind, id): (CredentialType, &str),
            active: bool,
        ) -> Result<(), ServiceError> {
            self.calls.lock().unwrap().push(format!("set {kind} {id} {active}"));
            for c in self.user.lock().unwrap().credentials.iter_mut().filter(|c| c.id == id) {
                c.status = if active {
                    CredentialStatus::Active
                } else {
                    CredentialStatus::Inactive
                };
            }
            Ok(())
        }
        async fn delete_login_profile(
            &self,
            _: &str,
            _: &str,
        ) -> Result<crate::core::model::LoginProfile, ServiceError> {
            self.calls.lock().unwrap().push("delete_login_profile".into());
            let mut u = self.user.lock().unwrap();
            let Some(i) = u.credentials.iter().position(|c| c.kind == CredentialType::Password) else {
                return Err(ServiceError {
                    code: Some("NoSuchEntity".into()),
                    message: "NoSuchEntity: the user has no login profile".into(),
                });
            };
            let gone = u.credentials.remove(i);
            Ok(crate::core::model::LoginProfile {
                created: gone.created,
                password_reset_required: false,
            })
        }
        async fn deactivate(&self, _: &str, name: &str, id: &str) -> Result<(), ServiceError> {
            self.calls.lock().unwrap().push(format!("deactivate {id}"));
            if self.denied.iter().any(|d| d == id) {
                return Err(denied());
            }
            if name != "u" {
                for u in self.users.lock().unwrap().iter_mut() {
                    for k in u.keys.iter_mut().filter(|k| k.id == id) {
                        k.status = KeyStatus::Inactive;
                    }
                }
                return Ok(());
            }
            if !self.fail_update || self.applied_anyway {
                for k in self.user.lock().unwrap().keys.iter_mut().filter(|k| k.id == id) {
                    k.status = KeyStatus::Inactive;
                }
            }
            if self.fail_update {
                return Err(denied());
            }
            Ok(())
        }
    }

    fn policy() -> Policy {
        let p = |action, days| RulePolicy {
            enabled: true,
            action,
            threshold: TimeDelta::days(days),
            grace_period: None,
        };
        Policy {
            rules: Rules {
                exposed_key: RulePolicy {
                    grace_period: Some(TimeDelta::zero()),
                    ..p(Action::Deactivate, 0)
                },
                multiple_active_keys: p(Action::Deactivate, 0),
                max_key_age: p(Action::Report, 90),
                unused_key: p(Action::Deactivate, 45),
                unused_password: p(Action::DeleteLoginProfile, 45),
                max_credential_age: p(Action::Deactivate, 90),
                credential_types: vec![CredentialType::SshPublicKey],
                long_term_service_credential: p(Action::Report, 90),
                services: vec![],
            },
            exemptions: vec![],
            owners: Default::default(),
            tag_exemptions: Default::default(),
            windows: Default::default(),
            grace_period: TimeDelta::zero(),
            wait_for_kept_key: true,
            revoke_sessions: true,
            hold_live: None,
        }
    }

    /// IAM's refusal of an update, with its code (a refusal backs the key off).
    fn denied() -> ServiceError {
        ServiceError {
            code: Some("AccessDenied".into()),
            message: "AccessDenied".into(),
        }
    }

    fn fake(keys: Vec<AccessKey>, fail_update: bool) -> Fake {
        Fake {
            user: Mutex::new(User {
                credentials: vec![],
                name: "u".into(),
                path: "/".into(),
                tags: vec![],
                keys,
            }),
            users: Mutex::new(vec![]),
            denied: vec![],
            fail_update,
            applied_anyway: false,
            blind_after_update: false,
            calls: Mutex::new(vec![]),
        }
    }

    fn key(id: &str, created_days: i64, used_days: Option<i64>) -> AccessKey {
        AccessKey {
            id: id.into(),
            status: KeyStatus::Active,
            created: t0() - TimeDelta::days(created_days),
            last_used: used_days.map(|d| t0() - TimeDelta::days(d)),
        }
    }

    fn candidate_of(user: &str, id: &str) -> Candidate {
        Candidate {
            credential_type: crate::core::model::CredentialType::AccessKey,
            account_id: "1".into(),
            user: user.into(),
            access_key_id: id.into(),
            rules: vec![Rule::UnusedKey],
            first_seen: t0(),
            deadline: t0(),
            owner: "unowned".into(),
        }
    }

    fn candidate(id: &str) -> Vec<Candidate> {
        vec![candidate_of("u", id)]
    }

    async fn run_with(fake: &Fake, due: &[Candidate], mode: Mode, cap: usize, state: &State) -> Executed {
        run_journaled(fake, due, mode, cap, state, &crate::ports::MemoryJournal::default()).await
    }

    async fn run_journaled(
        fake: &Fake,
        due: &[Candidate],
        mode: Mode,
        cap: usize,
        state: &State,
        journal: &crate::ports::MemoryJournal,
    ) -> Executed {
        let stop = AtomicBool::new(false);
        let p = policy();
        let run = RunInfo::for_tests();
        let ctx = Context {
            policy: &p,
            state,
            now: t0(),
            clock: &Ticking::default(),
            mode,
            cap,
            own_access_key_id: Some("OWN"),
            stop: &stop,
            journal,
            run: &run,
            leader: &crate::ports::SoleInstance,
            intents: &crate::ports::NoIntents,
        };
        execute(due, &ctx, fake).await
    }

    async fn run(fake: &Fake, due: &[Candidate], mode: Mode) -> Vec<Outcome> {
        run_with(fake, due, mode, 25, &State::default()).await.outcomes
    }

    fn idle_user(name: &str, key_id: &str) -> User {
        User {
            credentials: vec![],
            name: name.into(),
            path: "/".into(),
            tags: vec![],
            keys: vec![key(key_id, 100, None)],
        }
    }

    #[tokio::test]
    async fn failed_attempts_take_no_slot_of_the_cap_and_back_off() {
        let (mut f, due) = idle_fleet(&["d1", "d2", "a1", "a2", "a3"]);
        f.denied = vec!["D1".into(), "D2".into()];
        let first = run_with(&f, &due, Mode::Enforce, 2, &State::default()).await;
        let kinds: Vec<(&str, OutcomeKind)> = first
            .outcomes
            .iter()
            .map(|o| (o.candidate.access_key_id.as_str(), o.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("D1", OutcomeKind::Error),
                ("D2", OutcomeKind::Error),
                ("A1", OutcomeKind::Success),
                ("A2", OutcomeKind::Success),
            ]
        );
        assert_eq!(first.held_back.get("1"), Some(&1), "A3 waits for the cap");

        let mut state = State::default();
        record_outcomes(&mut state, &first.outcomes, t0());
        let d1 = state.failure("1", "D1").expect("recorded");
        assert_eq!((d1.attempts, d1.next_attempt), (1, t0() + TimeDelta::minutes(30)));
        assert!(state.failure("1", "A1").is_none());

        f.calls.lock().unwrap().clear();
        let second = run_with(&f, &due, Mode::Enforce, 2, &state).await;
        let kinds: Vec<OutcomeKind> = second.outcomes.iter().map(|o| o.kind).collect();
        assert_eq!(
            kinds,
            [
                OutcomeKind::Backoff,
                OutcomeKind::Backoff,
                OutcomeKind::NoLongerDue,
                OutcomeKind::NoLongerDue,
                OutcomeKind::Success
            ]
        );
        assert!(
            !f.calls.lock().unwrap().iter().any(|c| c.contains("D1")),
            "not tried during its backoff"
        );
    }

    #[tokio::test]
    async fn an_update_whose_effect_is_unknown_takes_its_slot_of_the_cap() {
        // Found by the randomized campaign (seed 3): with a cap of 1, a deactivation whose
        // read-back timed out did not count, and the run deactivated a second key.
        let (mut f, due) = idle_fleet(&["a1", "a2"]);
        f.blind_after_update = true;
        let out = run_with(&f, &due, Mode::Enforce, 1, &State::default()).await;
        let sent = f
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.starts_with("deactivate"))
            .count();
        assert_eq!(sent, 1, "{:?}", f.calls.lock().unwrap());
        assert!(out.outcomes[0].open && out.outcomes[0].kind == OutcomeKind::Error);
        assert_eq!(out.held_back.get("1"), Some(&1));
    }

    #[tokio::test]
    async fn its_own_key_is_never_touched() {
        let f = fake(vec![key("OWN", 100, None)], false);
        let out = run(&f, &candidate("OWN"), Mode::Enforce).await;
        assert_eq!(out[0].kind, OutcomeKind::NoLongerDue);
        assert!(f.calls.lock().unwrap().is_empty(), "not even read");
    }

    #[tokio::test]
    async fn a_user_or_key_gone_before_the_action_is_no_longer_due() {
        let f = fake(vec![], false);
        let out = run(&f, &[candidate_of("gone", "K")], Mode::Enforce).await;
        assert_eq!(out[0].kind, OutcomeKind::NoLongerDue);
        let f = fake(vec![key("OTHER", 1, Some(1))], false);
        let out = run(&f, &candidate("K"), Mode::Enforce).await;
        assert_eq!(out[0].kind, OutcomeKind::NoLongerDue, "the key was deleted");
    }

    fn idle_fleet(names: &[&str]) -> (Fake, Vec<Candidate>) {
        let mut f = fake(vec![], false);
        *f.users.get_mut().unwrap() = names.iter().map(|n| idle_user(n, &n.to_uppercase())).collect();
        let due = names.iter().map(|n| candidate_of(n, &n.to_uppercase())).collect();
        (f, due)
    }

    #[tokio::test]
    async fn every_attempt_is_journaled_with_its_outcome_and_run() {
        let (mut f, due) = idle_fleet(&["d1", "a1"]);
        f.denied = vec!["D1".into()];
        let journal = crate::ports::MemoryJournal::default();
        run_journaled(&f, &due, Mode::Enforce, 25, &State::default(), &journal).await;
        let entries = journal.entries.lock().unwrap();
        let got: Vec<(&str, &str, &str, &str)> = entries
            .iter()
            .map(|e| {
                (
                    e.access_key_id.as_str(),
                    e.outcome.as_str(),
                    e.mode.as_str(),
                    e.run.run_id.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("D1", "error", "enforce", "run-1"),
                ("A1", "success", "enforce", "run-1")
            ]
        );
        assert!(entries[0].error.as_deref().unwrap().contains("AccessDenied"));
        assert_eq!(entries[1].rules, [Rule::UnusedKey]);
        // Each at its own attempt (intent, then outcome: two readings per key), not at the
        // run's instant.
        let times: Vec<Timestamp> = entries.iter().map(|e| e.time).collect();
        assert_eq!(times, [t0() + TimeDelta::minutes(2), t0() + TimeDelta::minutes(4)]);
    }

    #[tokio::test]
    async fn a_dry_run_decision_is_journaled_once_per_grace_period() {
        let (f, due) = idle_fleet(&["a1"]);
        let journal = crate::ports::MemoryJournal::default();
        let first = run_journaled(&f, &due, Mode::DryRun, 25, &State::default(), &journal).await;
        let mut state = State::default();
        record_outcomes(&mut state, &first.outcomes, t0());
        let second = run_journaled(&f, &due, Mode::DryRun, 25, &state, &journal).await;
        assert_eq!(
            second.outcomes[0].kind,
            OutcomeKind::DryRun,
            "still decided and counted"
        );
        assert_eq!(journal.entries.lock().unwrap().len(), 1, "journaled once");
        // A new grace period (the finding went and came back) is a new decision.
        let mut again = due.clone();
        again[0].first_seen = t0() + TimeDelta::days(1);
        run_journaled(&f, &again, Mode::DryRun, 25, &state, &journal).await;
        assert_eq!(journal.entries.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn no_journal_no_further_action() {
        let (f, due) = idle_fleet(&["a1", "a2"]);
        let journal = crate::ports::MemoryJournal {
            fail: Some("disk full".into()),
            ..Default::default()
        };
        let run = run_journaled(&f, &due, Mode::Enforce, 25, &State::default(), &journal).await;
        // The first key was deactivated (it cannot be undone by not writing); the second waits.
        assert_eq!(run.outcomes.len(), 1);
        assert_eq!(run.outcomes[0].kind, OutcomeKind::Success);
        assert_eq!(run.journal_error, Some(StoreError("disk full".into())));
        assert!(!f.calls.lock().unwrap().iter().any(|c| c == "deactivate A2"));
    }

    #[tokio::test]
    async fn enforce_deactivates_after_a_fresh_decision_and_confirms() {
        let f = fake(vec![key("IDLE", 100, None)], false);
        let out = run(&f, &candidate("IDLE"), Mode::Enforce).await;
        assert_eq!(out[0].kind, OutcomeKind::Success);
        assert_eq!(*f.calls.lock().unwrap(), ["read", "deactivate IDLE", "read"]);
        assert_eq!(f.user.lock().unwrap().keys[0].status, KeyStatus::Inactive);
    }

    #[tokio::test]
    async fn an_old_ssh_key_is_set_inactive_after_a_fresh_read_of_its_kind_and_confirmed() {
        let f = fake(vec![], false);
        let ssh = Credential {
            kind: CredentialType::SshPublicKey,
            id: "APKA1".into(),
            status: CredentialStatus::Active,
            created: t0() - TimeDelta::days(100),
            last_used: None,
            service: None,
            expires: None,
        };
        f.user.lock().unwrap().credentials.push(ssh);
        let mut due = candidate("APKA1");
        due[0].credential_type = CredentialType::SshPublicKey;
        due[0].rules = vec![Rule::MaxCredentialAge];
        let out = run(&f, &due, Mode::Enforce).await;
        assert_eq!((out[0].kind, &out[0].error), (OutcomeKind::Success, &None));
        assert_eq!(
            *f.calls.lock().unwrap(),
            [
                "read ssh_public_key",
                "set ssh_public_key APKA1 false",
                "read ssh_public_key"
            ]
        );
        assert_eq!(f.user.lock().unwrap().credentials[0].status, CredentialStatus::Inactive);

        // Deleted between the audit and the action: nothing is sent.
        f.user.lock().unwrap().credentials.clear();
        f.calls.lock().unwrap().clear();
        let out = run(&f, &due, Mode::Enforce).await;
        assert_eq!(out[0].kind, OutcomeKind::NoLongerDue);
        assert_eq!(*f.calls.lock().unwrap(), ["read ssh_public_key"]);
    }

    #[tokio::test]
    async fn an_unused_password_is_deleted_after_a_fresh_read_and_its_settings_journaled() {
        let f = fake(vec![], false);
        let arn = "arn:aws:iam::1:user/u";
        let password = |used_days: i64| Credential {
            kind: CredentialType::Password,
            id: arn.into(),
            status: CredentialStatus::Active,
            created: t0() - TimeDelta::days(200),
            last_used: Some(t0() - TimeDelta::days(used_days)),
            service: None,
            expires: None,
        };
        let mut due = candidate(arn);
        due[0].credential_type = CredentialType::Password;
        due[0].rules = vec![Rule::UnusedPassword];

        // Signed in yesterday (after the audit read): left alone, nothing sent.
        f.user.lock().unwrap().credentials.push(password(1));
        let out = run(&f, &due, Mode::Enforce).await;
        assert_eq!(out[0].kind, OutcomeKind::NoLongerDue);
        assert_eq!(*f.calls.lock().unwrap(), ["read password"]);

        f.user.lock().unwrap().credentials = vec![password(100)];
        f.calls.lock().unwrap().clear();
        let journal = crate::ports::MemoryJournal::default();
        let done = run_journaled(&f, &due, Mode::Enforce, 10, &State::default(), &journal).await;
        assert_eq!(
            done.outcomes[0].kind,
            OutcomeKind::Success,
            "{:?}",
            done.outcomes[0].error
        );
        assert_eq!(
            *f.calls.lock().unwrap(),
            ["read password", "delete_login_profile", "read password"]
        );
        assert!(f.user.lock().unwrap().credentials.is_empty());
        let entries = journal.read().await.unwrap().entries;
        assert_eq!(
            entries[0].action,
            crate::core::journal::JournalAction::DeleteLoginProfile
        );
        assert!(entries[0].is_confirmed_deactivation());
        assert_eq!(
            entries[0].login_profile.map(|p| p.created),
            Some(t0() - TimeDelta::days(200))
        );

        // Deleted by someone else before keywarden came to it: nothing is sent.
        f.calls.lock().unwrap().clear();
        let out = run(&f, &due, Mode::Enforce).await;
        assert_eq!(out[0].kind, OutcomeKind::NoLongerDue);
        assert_eq!(*f.calls.lock().unwrap(), ["read password"]);
    }

    #[tokio::test]
    async fn dry_run_decides_the_same_and_changes_nothing() {
        let f = fake(vec![key("IDLE", 100, None)], false);
        let out = run(&f, &candidate("IDLE"), Mode::DryRun).await;
        assert_eq!(out[0].kind, OutcomeKind::DryRun);
        assert_eq!(*f.calls.lock().unwrap(), ["read"]);
        assert_eq!(f.user.lock().unwrap().keys[0].status, KeyStatus::Active);
    }

    #[tokio::test]
    async fn a_key_compliant_on_fresh_data_is_left_alone() {
        // Used yesterday: the audit's view was stale.
        let f = fake(vec![key("IDLE", 100, Some(1))], false);
        let out = run(&f, &candidate("IDLE"), Mode::Enforce).await;
        assert_eq!(out[0].kind, OutcomeKind::NoLongerDue);
        assert_eq!(*f.calls.lock().unwrap(), ["read"]);
    }

    #[tokio::test]
    async fn the_kept_key_is_never_deactivated_for_multiple_keys() {
        // Both used recently: only multiple_active_keys applies, and KEEP is the kept key.
        let f = fake(vec![key("KEEP", 10, Some(1)), key("OTHER", 20, Some(5))], false);
        let mut p = candidate("KEEP");
        p[0].rules = vec![Rule::MultipleActiveKeys];
        let out = run(&f, &p, Mode::Enforce).await;
        assert_eq!(out[0].kind, OutcomeKind::NoLongerDue);
        let out = run(&f, &candidate("OTHER"), Mode::Enforce).await;
        assert_eq!(out[0].kind, OutcomeKind::Success);
    }

    #[tokio::test]
    async fn update_errors_are_reported_not_retried() {
        let f = fake(vec![key("IDLE", 100, None)], true);
        let out = run(&f, &candidate("IDLE"), Mode::Enforce).await;
        assert_eq!(out[0].kind, OutcomeKind::Error);
        assert_eq!(
            out[0].error.as_deref(),
            Some("AccessDenied (read-back shows the key still active)")
        );
        assert_eq!(
            *f.calls.lock().unwrap(),
            ["read", "deactivate IDLE", "read"],
            "read back, never called twice"
        );
    }

    #[tokio::test]
    async fn an_update_whose_answer_was_lost_counts_as_done_when_iam_shows_it() {
        let mut f = fake(vec![key("IDLE", 100, None)], true);
        f.applied_anyway = true;
        let out = run(&f, &candidate("IDLE"), Mode::Enforce).await;
        assert_eq!(out[0].kind, OutcomeKind::Success);
        assert!(out[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("reported an error but the key is inactive")));
        assert_eq!(*f.calls.lock().unwrap(), ["read", "deactivate IDLE", "read"]);
    }
}
