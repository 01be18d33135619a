//! The IAM credential report (GetCredentialReport's CSV), parsed strictly.
//!
//! Pure: bytes in, rows out. A missing column or a cell that is neither a value nor one of
//! the report's placeholders (`N/A`, `no_information`, `not_supported`) is an error naming the
//! line and column; nothing is guessed, so no finding is ever invented from a malformed report.
//! Dates look like `2026-12-01T09:14:53+00:00` (which aws-smithy's DateTime rejects).

use crate::core::credentials::{Credential, CredentialStatus, CredentialType};
use crate::core::model::{AccessKey, KeyStatus, Timestamp};

/// Columns keywarden reads; the report has more (MFA, the certificates' dates).
const COLUMNS: [&str; 14] = [
    "user",
    "arn",
    "access_key_1_active",
    "access_key_1_last_rotated",
    "access_key_1_last_used_date",
    "access_key_2_active",
    "access_key_2_last_rotated",
    "access_key_2_last_used_date",
    "user_creation_time",
    "password_enabled",
    "password_last_used",
    "password_last_changed",
    "cert_1_active",
    "cert_2_active",
];

const ROOT: &str = "<root_account>";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReportError {
    #[error("credential report: not CSV: {0}")]
    Csv(String),
    #[error("credential report: column {0:?} is missing from the header")]
    MissingColumn(&'static str),
    #[error("credential report line {line}, column {column:?}: {message}")]
    Cell {
        line: u64,
        column: &'static str,
        message: String,
    },
    /// A date later than the report itself: a last use in year 9999 would hide `unused_key`.
    #[error("credential report: user {user}: {what} {date} is later than the report ({generated}) or now")]
    Future {
        user: String,
        what: &'static str,
        date: String,
        generated: String,
    },
}

/// A row's user: a name IAM can give (1-64 of letters, digits and `+=,.@_-`), on one row only
/// (`seen`: the line of each user so far).
fn check_user(user: &str, line: u64, seen: &mut std::collections::HashMap<String, u64>) -> Result<(), String> {
    if user.is_empty() {
        return Err("empty user name".into());
    }
    if !iam_user_name(user) {
        return Err(format!(
            "{:?} is no IAM user name (1-64 of letters, digits and +=,.@_-)",
            crate::sys::cut(user, 80)
        ));
    }
    match seen.insert(user.to_string(), line) {
        Some(first) => Err(format!("user {user} appears twice (also on line {first})")),
        None => Ok(()),
    }
}

/// Whether `name` can be an IAM user name: 1-64 of letters, digits and `+=,.@_-`.
fn iam_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// One access key slot of a user (the report knows keys only by slot, not by id).
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub active: bool,
    /// Creation or last rotation: the current key's CreateDate.
    pub last_rotated: Timestamp,
    pub last_used: Option<Timestamp>,
}

impl Slot {
    /// The key in this slot, once its id is known (or a placeholder id); last use is the
    /// report's, and only for an active key.
    pub fn key(&self, id: String, created: Timestamp) -> AccessKey {
        AccessKey {
            id,
            status: if self.active {
                KeyStatus::Active
            } else {
                KeyStatus::Inactive
            },
            created,
            last_used: if self.active { self.last_used } else { None },
        }
    }
}

/// A user's console password, as the report tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct Password {
    /// The report has no login profile creation date: the password's last change (its
    /// creation, unless someone changed it since), else the user's creation.
    pub since: Timestamp,
    /// `None`: never used (`N/A`), or no use recorded (`no_information`).
    pub last_used: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub user: String,
    pub arn: String,
    /// IAM path, from the ARN (`arn:aws:iam::123456789012:user/service/ci` -> `/service/`).
    pub path: String,
    pub slots: Vec<Slot>,
    /// `None`: no console access (`password_enabled` false, or a placeholder).
    pub password: Option<Password>,
    /// How many signing certificates of the user are active (`cert_1_active`,
    /// `cert_2_active`): the report has no certificate ids, so only such users are listed, and
    /// a remembered listing is used only while its count of active ones is this.
    pub active_certificates: usize,
}

impl Row {
    /// Whether a remembered listing's signing certificates can stand for a listing now: it
    /// has as many active ones as the row shows (or did not list certificates at all). A
    /// certificate uploaded, deleted or switched since changes the count, except one swapped
    /// for another within a full refresh, which the next full refresh or its CloudTrail event
    /// catches.
    pub fn agrees_on_certificates(&self, l: &crate::core::history::Listing) -> bool {
        l.of(CredentialType::SigningCertificate).is_none_or(|certs| {
            certs.filter(|c| c.status == CredentialStatus::Active).count() == self.active_certificates
        })
    }

    /// The console password as a credential, named by the user's ARN.
    pub fn password_credential(&self) -> Option<Credential> {
        self.password.as_ref().map(|p| Credential {
            kind: CredentialType::Password,
            id: self.arn.clone(),
            status: CredentialStatus::Active,
            created: p.since,
            last_used: p.last_used,
            service: None,
            expires: None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CredentialReport {
    pub rows: Vec<Row>,
    pub root_access_keys_present: bool,
    /// Every account id named by a row's ARN (the root row's included): a report of the
    /// account read names exactly that one.
    pub accounts: std::collections::BTreeSet<String>,
}

/// `arn:PARTITION:iam::ACCOUNT:...` -> ACCOUNT.
pub fn arn_account(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    match (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("arn"), Some(_), Some("iam"), Some(""), Some(account)) if !account.is_empty() => Some(account),
        _ => None,
    }
}

fn placeholder(s: &str) -> bool {
    matches!(s, "N/A" | "no_information" | "not_supported" | "")
}

fn date(cell: &str) -> Result<Option<Timestamp>, String> {
    if placeholder(cell) {
        return Ok(None);
    }
    crate::sys::timefmt::parse(cell)
        .map(Some)
        .map_err(|e| format!("{cell:?} is not a date: {e}"))
}

fn flag(cell: &str) -> Result<bool, String> {
    match cell {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!("{other:?} is not true or false")),
    }
}

fn path_of(arn: &str) -> String {
    // arn:aws:iam::ACCOUNT:user/PATH/NAME
    match arn.split_once(":user/") {
        Some((_, rest)) => match rest.rfind('/') {
            Some(i) => format!("/{}/", &rest[..i]),
            None => "/".to_string(),
        },
        None => "/".to_string(),
    }
}

pub fn parse(bytes: &[u8]) -> Result<CredentialReport, ReportError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(bytes);
    let headers = reader.headers().map_err(|e| ReportError::Csv(e.to_string()))?.clone();
    let mut idx = [0usize; COLUMNS.len()];
    for (i, name) in COLUMNS.iter().enumerate() {
        idx[i] = headers
            .iter()
            .position(|h| h == *name)
            .ok_or(ReportError::MissingColumn(name))?;
    }
    let mut rows = Vec::new();
    let mut root_access_keys_present = false;
    let mut accounts = std::collections::BTreeSet::new();
    let mut seen: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| ReportError::Csv(e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let cell = |c: usize| record.get(idx[c]).unwrap_or("");
        let bad = |c: usize, message: String| ReportError::Cell {
            line,
            column: COLUMNS[c],
            message,
        };
        let user = cell(0).to_string();
        let mut slots = Vec::with_capacity(2);
        for (active_c, rotated_c, used_c) in [(2, 3, 4), (5, 6, 7)] {
            let active = flag(cell(active_c)).map_err(|m| bad(active_c, m))?;
            let rotated = date(cell(rotated_c)).map_err(|m| bad(rotated_c, m))?;
            let used = date(cell(used_c)).map_err(|m| bad(used_c, m))?;
            match rotated {
                Some(last_rotated) => slots.push(Slot {
                    active,
                    last_rotated,
                    last_used: used,
                }),
                None if active => {
                    return Err(bad(rotated_c, "an active key without a rotation date".into()));
                }
                None => {}
            }
        }
        let password = password(&cell, &bad)?;
        let mut active_certificates = 0;
        for c in [12, 13] {
            // `N/A` and `not_supported` (the root row's) are no certificate.
            let active = !placeholder(cell(c)) && flag(cell(c)).map_err(|m| bad(c, m))?;
            active_certificates += usize::from(active);
        }
        let arn = cell(1).to_string();
        match arn_account(&arn) {
            Some(a) => {
                accounts.insert(a.to_string());
            }
            None => return Err(bad(1, format!("{arn:?} is not an IAM ARN"))),
        }
        if user == ROOT {
            root_access_keys_present = slots.iter().any(|s| s.active);
            continue;
        }
        check_user(&user, line, &mut seen).map_err(|m| bad(0, m))?;
        rows.push(Row {
            path: path_of(&arn),
            user,
            arn,
            slots,
            password,
            active_certificates,
        });
    }
    Ok(CredentialReport {
        rows,
        root_access_keys_present,
        accounts,
    })
}

/// Every date of `report` is at most the report's generation time (plus a day of clock
/// skew).
pub fn check_dates(report: &CredentialReport, generated: Timestamp) -> Result<(), ReportError> {
    let latest = generated + chrono::TimeDelta::days(1);
    for row in &report.rows {
        let mut dates: Vec<(&'static str, Timestamp)> = Vec::new();
        for s in &row.slots {
            dates.push(("an access key's last rotation", s.last_rotated));
            dates.extend(s.last_used.map(|t| ("an access key's last use", t)));
        }
        if let Some(p) = &row.password {
            dates.push(("the password's last change", p.since));
            dates.extend(p.last_used.map(|t| ("the password's last use", t)));
        }
        if let Some((what, date)) = dates.into_iter().find(|(_, t)| *t > latest) {
            return Err(ReportError::Future {
                user: row.user.clone(),
                what,
                date: crate::sys::timefmt::format(&date),
                generated: crate::sys::timefmt::format(&generated),
            });
        }
    }
    Ok(())
}

/// A row's password: `password_enabled` true with its dates; false or a placeholder
/// (`not_supported` is the root row's) is no console access. A date that is neither a date nor
/// a placeholder is an error, as everywhere in the report.
fn password<'a>(
    cell: &dyn Fn(usize) -> &'a str,
    bad: &dyn Fn(usize, String) -> ReportError,
) -> Result<Option<Password>, ReportError> {
    let enabled = match cell(9) {
        c if placeholder(c) => false,
        c => flag(c).map_err(|m| bad(9, m))?,
    };
    if !enabled {
        return Ok(None);
    }
    let last_used = date(cell(10)).map_err(|m| bad(10, m))?;
    let changed = date(cell(11)).map_err(|m| bad(11, m))?;
    let created = date(cell(8)).map_err(|m| bad(8, m))?;
    let since = changed
        .or(created)
        .ok_or_else(|| bad(11, "a password without a change or user creation date".into()))?;
    Ok(Some(Password { since, last_used }))
}

/// Why a row's slots could not be named with key ids.
#[derive(Debug, Clone, PartialEq)]
pub enum NamingError {
    /// Two keys (or two slots) share a creation second: which slot is which key cannot be
    /// told from the report. The user is read live through the API instead.
    Ambiguous,
    /// The report disagrees with the keys (it is older than them): the user is unreadable.
    Stale(String),
}

/// Names a row's slots from the ids recorded at the user's last listing (`core::history::
/// KeyNames`), without a request: each slot's last-rotated second must be the creation second
/// of exactly one recorded key, and no key may name two slots. `None` (list the user again)
/// for a new key, a shared second, or no match. Statuses and last use are the report's.
pub fn name_from_record(row: &Row, known: &crate::core::history::KeyNames) -> Option<Vec<AccessKey>> {
    let mut out: Vec<AccessKey> = Vec::with_capacity(row.slots.len());
    for slot in &row.slots {
        let mut matching = known
            .keys
            .iter()
            .filter(|(_, created)| created.timestamp() == slot.last_rotated.timestamp());
        let (id, created) = matching.next()?;
        if matching.next().is_some() || out.iter().any(|k| &k.id == id) {
            return None;
        }
        out.push(slot.key(id.clone(), *created));
    }
    Some(out)
}

/// Names a row's slots with the key ids of a fresh ListAccessKeys of that user: a slot is the
/// key whose CreateDate equals its last-rotated time (to the second; the report has no finer
/// precision). Each key names at most one slot. Any slot left unmatched, or a status that
/// disagrees, is `Stale`; a creation second shared by two keys is `Ambiguous` (guessing could
/// give a key the other's last use, or one key both slots).
pub fn name_slots(row: &Row, listed: &[AccessKey]) -> Result<Vec<AccessKey>, NamingError> {
    let mut out = Vec::with_capacity(row.slots.len());
    let second = |k: &AccessKey| k.created.timestamp();
    for (i, k) in listed.iter().enumerate() {
        if listed[..i].iter().any(|o| second(o) == second(k)) {
            return Err(NamingError::Ambiguous);
        }
    }
    for slot in &row.slots {
        let key = listed
            .iter()
            .find(|k| second(k) == slot.last_rotated.timestamp())
            .ok_or_else(|| {
                NamingError::Stale(format!(
                    "no key of {} was created at {} (the report is older than the keys)",
                    row.user,
                    crate::sys::timefmt::format(&slot.last_rotated)
                ))
            })?;
        if out.iter().any(|k: &AccessKey| k.id == key.id) {
            return Err(NamingError::Ambiguous);
        }
        if key.is_active() != slot.active {
            return Err(NamingError::Stale(format!(
                "key {} of {} changed status since the report",
                key.id, row.user
            )));
        }
        out.push(slot.key(key.id.clone(), key.created));
    }
    if out.len() != listed.len() {
        return Err(NamingError::Stale(format!(
            "{} has {} keys but the report shows {}",
            row.user,
            listed.len(),
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,\
password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,\
access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,\
access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,\
cert_1_last_rotated,cert_2_active,cert_2_last_rotated";

    fn report(rows: &[&str]) -> Vec<u8> {
        let mut s = HEADER.to_string();
        for r in rows {
            s.push('\n');
            s.push_str(r);
        }
        s.push('\n');
        s.into_bytes()
    }

    const ROOT_ROW: &str = "<root_account>,arn:aws:iam::123456789012:root,2020-01-01T00:00:00+00:00,not_supported,\
2026-11-01T00:00:00+00:00,not_supported,not_supported,true,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A";

    #[test]
    fn real_columns_placeholders_and_two_slots() {
        let bytes = report(&[
            ROOT_ROW,
            "alice,arn:aws:iam::123456789012:user/alice,2025-01-01T00:00:00+00:00,false,no_information,N/A,N/A,false,\
true,2026-01-02T03:04:05+00:00,2026-11-30T10:00:00+00:00,us-east-1,s3,\
false,2025-06-01T00:00:00+00:00,N/A,N/A,N/A,false,N/A,false,N/A",
            "ci,arn:aws:iam::123456789012:user/service/ci/ci,2025-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,\
true,2026-02-01T00:00:00+00:00,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A",
            "nobody,arn:aws:iam::123456789012:user/nobody,2025-01-01T00:00:00+00:00,true,2026-11-01T00:00:00+00:00,\
N/A,N/A,true,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A",
        ]);
        let r = parse(&bytes).unwrap();
        assert!(!r.root_access_keys_present);
        assert_eq!(r.rows.len(), 3);
        let alice = &r.rows[0];
        assert_eq!((alice.user.as_str(), alice.path.as_str()), ("alice", "/"));
        assert_eq!(alice.slots.len(), 2);
        assert!(alice.slots[0].active && !alice.slots[1].active);
        assert_eq!(
            crate::sys::timefmt::format(&alice.slots[0].last_rotated),
            "2026-01-02T03:04:05Z"
        );
        assert_eq!(
            crate::sys::timefmt::format(&alice.slots[0].last_used.unwrap()),
            "2026-11-30T10:00:00Z"
        );
        assert_eq!(alice.slots[1].last_used, None);
        let ci = &r.rows[1];
        assert_eq!(ci.path, "/service/ci/");
        assert_eq!(ci.slots[0].last_used, None, "N/A: never used");
        assert!(r.rows[2].slots.is_empty(), "no keys");
    }

    #[test]
    fn slots_are_named_by_creation_time() {
        let t = |s: &str| crate::sys::timefmt::parse(s).unwrap();
        let row = Row {
            active_certificates: 0,
            user: "alice".into(),
            arn: "arn:aws:iam::1:user/alice".into(),
            path: "/".into(),
            slots: vec![
                Slot {
                    active: true,
                    last_rotated: t("2026-01-02T03:04:05Z"),
                    last_used: Some(t("2026-11-30T00:00:00Z")),
                },
                Slot {
                    active: false,
                    last_rotated: t("2025-06-01T00:00:00Z"),
                    last_used: None,
                },
            ],
            password: None,
        };
        let key = |id: &str, active: bool, created: &str| AccessKey {
            id: id.into(),
            status: if active { KeyStatus::Active } else { KeyStatus::Inactive },
            // ListAccessKeys has sub-second precision the report lacks.
            created: t(created),
            last_used: None,
        };
        let listed = vec![
            key("AKIAOLD", false, "2025-06-01T00:00:00.4Z"),
            key("AKIANEW", true, "2026-01-02T03:04:05.9Z"),
        ];
        let named = name_slots(&row, &listed).unwrap();
        assert_eq!(named[0].id, "AKIANEW");
        assert_eq!(named[0].last_used, Some(t("2026-11-30T00:00:00Z")));
        assert_eq!(named[1].id, "AKIAOLD");

        // Rotated since the report: no key matches the slot.
        let rotated = vec![
            key("AKIAOLD", false, "2025-06-01T00:00:00Z"),
            key("AKIAROT", true, "2026-11-30T00:00:00Z"),
        ];
        assert!(name_slots(&row, &rotated).is_err());
        // Deactivated since the report.
        let changed = vec![
            key("AKIAOLD", false, "2025-06-01T00:00:00Z"),
            key("AKIANEW", false, "2026-01-02T03:04:05Z"),
        ];
        assert!(matches!(name_slots(&row, &changed), Err(NamingError::Stale(m)) if m.contains("changed status")));
        // A key the report does not know.
        let mut extra = listed.clone();
        extra.push(key("AKIAX", true, "2026-12-01T00:00:00Z"));
        assert!(name_slots(&row, &extra).is_err());
    }

    #[test]
    fn keys_of_one_second_are_ambiguous_never_named_twice() {
        let t = |s: &str| crate::sys::timefmt::parse(s).unwrap();
        let slot = |active| Slot {
            active,
            last_rotated: t("2026-11-01T00:00:00Z"),
            last_used: None,
        };
        let row = Row {
            active_certificates: 0,
            user: "twins".into(),
            arn: "arn:aws:iam::1:user/twins".into(),
            path: "/".into(),
            slots: vec![slot(true), slot(true)],
            password: None,
        };
        let key = |id: &str, created: &str| AccessKey {
            id: id.into(),
            status: KeyStatus::Active,
            created: t(created),
            last_used: None,
        };
        let listed = [key("A", "2026-11-01T00:00:00.1Z"), key("B", "2026-11-01T00:00:00.7Z")];
        assert_eq!(name_slots(&row, &listed), Err(NamingError::Ambiguous));
        // One key listed for two slots of the same second: not both slots from one key.
        let one = [key("A", "2026-11-01T00:00:00Z")];
        assert!(name_slots(&row, &one).is_err());
    }

    #[test]
    fn accounts_named_by_the_report() {
        let r = parse(&report(&[ROOT_ROW])).unwrap();
        assert_eq!(r.accounts.iter().collect::<Vec<_>>(), ["123456789012"]);
        assert_eq!(arn_account("arn:aws:iam::123456789012:user/a/b"), Some("123456789012"));
        assert_eq!(arn_account("arn:aws-cn:iam::1:root"), Some("1"));
        assert_eq!(arn_account("not-an-arn"), None);
    }

    #[test]
    fn root_keys_are_detected() {
        let root = ROOT_ROW.replacen("true,false,N/A", "true,true,2021-01-01T00:00:00+00:00", 1);
        assert!(parse(&report(&[&root])).unwrap().root_access_keys_present);
    }

    #[test]
    fn a_duplicated_user_a_name_iam_cannot_have_and_a_date_after_the_report_are_errors() {
        let alice = "alice,arn:aws:iam::123456789012:user/alice,2025-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,\
true,2026-01-02T03:04:05+00:00,2026-11-30T10:00:00+00:00,us-east-1,s3,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A";
        // The same user twice would give its findings and metric series twice.
        let e = parse(&report(&[alice, alice])).unwrap_err();
        assert!(
            matches!(
                e,
                ReportError::Cell {
                    line: 3,
                    column: "user",
                    ..
                }
            ),
            "{e}"
        );
        // IAM user names are [\w+=,.@-]{1,64}: a quote or a newline is no user of IAM's.
        let quoted = alice.replacen("alice,", "\"al\"\"ice\nx\",", 1);
        let e = parse(&report(&[&quoted])).unwrap_err();
        assert!(matches!(e, ReportError::Cell { column: "user", .. }), "{e}");
        // A last use in year 9999 would hide `unused_key` forever.
        let future = alice.replace("2026-11-30T10:00:00+00:00", "9999-12-31T00:00:00+00:00");
        let r = parse(&report(&[&future])).unwrap();
        let generated = crate::sys::timefmt::parse("2026-12-01T00:00:00Z").unwrap();
        let e = check_dates(&r, generated).unwrap_err().to_string();
        assert!(e.contains("alice") && e.contains("9999"), "{e}");
        assert!(check_dates(&parse(&report(&[alice])).unwrap(), generated).is_ok());
    }

    #[test]
    fn malformed_reports_are_errors_not_findings() {
        assert_eq!(
            parse(b"user,arn\nalice,arn:aws:iam::1:user/alice\n").unwrap_err(),
            ReportError::MissingColumn("access_key_1_active")
        );
        let bad_date = "bob,arn:aws:iam::1:user/bob,2025-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,\
true,yesterday,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A";
        let e = parse(&report(&[bad_date])).unwrap_err();
        assert!(
            matches!(
                e,
                ReportError::Cell {
                    line: 2,
                    column: "access_key_1_last_rotated",
                    ..
                }
            ),
            "{e}"
        );
        let before_year_0 = bad_date.replace("yesterday", "0000-01-01T03:04:05+15:00");
        let e = parse(&report(&[&before_year_0])).unwrap_err();
        assert!(
            matches!(
                e,
                ReportError::Cell {
                    column: "access_key_1_last_rotated",
                    ..
                }
            ) && e.to_string().contains("0000-9999"),
            "a date keywarden could not write back: {e}"
        );
        let bad_flag = bad_date.replace("true,yesterday", "maybe,2026-01-01T00:00:00+00:00");
        assert!(matches!(
            parse(&report(&[&bad_flag])).unwrap_err(),
            ReportError::Cell {
                column: "access_key_1_active",
                ..
            }
        ));
        let active_without_date = bad_date.replace("true,yesterday", "true,N/A");
        assert!(parse(&report(&[&active_without_date])).is_err());
        let short_row = "carol,arn:aws:iam::1:user/carol,2025";
        assert!(parse(&report(&[short_row])).is_err(), "a truncated row is rejected");
    }

    #[test]
    fn passwords_come_with_their_dates_and_placeholders_mean_no_use() {
        let t = |s: &str| crate::sys::timefmt::parse(s).unwrap();
        let bytes = report(&[
            ROOT_ROW,
            "alice,arn:aws:iam::123456789012:user/alice,2025-01-01T00:00:00+00:00,false,no_information,N/A,N/A,false,\
false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A",
            "nobody,arn:aws:iam::123456789012:user/nobody,2025-01-01T00:00:00+00:00,true,2026-11-01T00:00:00+00:00,\
N/A,N/A,true,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A",
            "dana,arn:aws:iam::123456789012:user/dana,2025-01-01T00:00:00+00:00,true,no_information,\
2025-03-01T00:00:00+00:00,N/A,false,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A",
        ]);
        let r = parse(&bytes).unwrap();
        assert_eq!(r.rows[0].password, None, "no console access");
        assert_eq!(r.rows[0].password_credential(), None);
        let nobody = r.rows[1].password.clone().expect("a password");
        assert_eq!(nobody.last_used, Some(t("2026-11-01T00:00:00Z")));
        assert_eq!(
            nobody.since,
            t("2025-01-01T00:00:00Z"),
            "no change date: the user's creation"
        );
        let dana = r.rows[2].password_credential().expect("a password");
        assert_eq!(dana.id, "arn:aws:iam::123456789012:user/dana");
        assert_eq!((dana.created, dana.last_used), (t("2025-03-01T00:00:00Z"), None));
        let bad = report(&[
            "dana,arn:aws:iam::1:user/dana,2025-01-01T00:00:00+00:00,true,no_information,\
yesterday,N/A,false,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A",
        ]);
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.contains("password_last_changed") && e.contains("yesterday"), "{e}");
        let odd = report(&["dana,arn:aws:iam::1:user/dana,2025-01-01T00:00:00+00:00,maybe,N/A,\
N/A,N/A,false,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A"]);
        assert!(parse(&odd).unwrap_err().to_string().contains("password_enabled"));
    }

    #[test]
    fn an_active_certificate_is_told_from_either_slot_and_placeholders_are_none() {
        // The last four columns: cert_1_active, cert_1_last_rotated, cert_2_active, cert_2_last_rotated.
        let row = |user: &str, certs: &str| {
            format!(
                "{user},arn:aws:iam::123456789012:user/{user},2025-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,\
false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,{certs}"
            )
        };
        let bytes = report(&[
            ROOT_ROW,
            &row("none", "false,N/A,false,N/A"),
            &row("first", "true,N/A,false,N/A"),
            &row("second", "false,N/A,true,2026-01-01T00:00:00+00:00"),
            &row("placeholders", "N/A,N/A,not_supported,N/A"),
            &row("both", "true,2026-01-01T00:00:00+00:00,true,2026-02-01T00:00:00+00:00"),
        ]);
        let r = parse(&bytes).unwrap();
        let active: Vec<(&str, usize)> = r
            .rows
            .iter()
            .map(|r| (r.user.as_str(), r.active_certificates))
            .collect();
        assert_eq!(
            active,
            [
                ("none", 0),
                ("first", 1),
                ("second", 1),
                ("placeholders", 0),
                ("both", 2)
            ]
        );
        let e = parse(&report(&[&row("odd", "yes,N/A,false,N/A")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cert_1_active") && e.contains("yes"), "{e}");
    }
}
