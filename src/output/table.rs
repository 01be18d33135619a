//! The audit report as a table for people: fits 80 columns, a heading per user, one line per
//! finding, then the summary.

use std::fmt::Write;

use crate::core::model::{CredentialType, Timestamp};
use crate::core::policy::{Action, Rule};
use crate::core::report::Report;
use crate::core::rules::Finding;

impl Report {
    /// Fits 80 columns: a heading per user, one line per finding, then the summary.
    /// An answer that is not complete says so first, with what failed and what to do; one
    /// that read nothing shows no counts at all.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        errors(&mut out, self);
        if self.read_nothing() {
            return out;
        }
        findings(&mut out, self);
        out.push('\n');
        summary(&mut out, self);
        out
    }
}

fn findings(out: &mut String, r: &Report) {
    if r.findings.is_empty() {
        out.push_str(if r.complete {
            "No findings.\n"
        } else {
            "No findings among what was read.\n"
        });
        return;
    }
    let now = r.evaluated_at;
    let multi_account = r.accounts.len() > 1;
    let _ = writeln!(
        out,
        "{:<23}{:<21}{:>5} {:>5}  ACTION",
        "USER / CREDENTIAL", "RULE", "AGE", "IDLE"
    );
    let mut last_user: Option<(&str, &str)> = None;
    for f in &r.findings {
        let this = (f.account_id.as_str(), f.user.as_str());
        if last_user != Some(this) {
            if multi_account {
                let _ = writeln!(out, "{} ({})  owner: {}", f.user, f.account_id, f.owner);
            } else {
                let _ = writeln!(out, "{}  owner: {}", f.user, f.owner);
            }
            if let Some(problem) = &f.tag_exemption_problem {
                let _ = writeln!(out, "  tag exemption not honoured: {}", truncate(problem, 50));
            }
            last_user = Some(this);
        }
        if let Some(expired) = &f.expired_exemption {
            let _ = writeln!(out, "  exemption no longer applies: {}", truncate(expired, 50));
        }
        // Time since last use; "never" for a key never used.
        let used = f.last_used.map_or("never".to_string(), |t| short_age(now, t));
        let _ = writeln!(
            out,
            "  {:<20} {:<20} {:>5} {:>5}  {}",
            truncate(&credential(f), 20),
            truncate(f.rule.as_str(), 20),
            short_age(now, f.created),
            used,
            truncate(&action(f, now), 23)
        );
    }
}

/// The credential a row is about: a key's id; the other kinds' with a word in front (a
/// password is named by the user, who heads the group).
fn credential(f: &Finding) -> String {
    match f.credential_type {
        CredentialType::AccessKey => f.access_key_id.clone(),
        CredentialType::Password => "password".into(),
        CredentialType::SshPublicKey => format!("ssh {}", f.access_key_id),
        CredentialType::ServiceSpecificCredential => format!("service {}", f.access_key_id),
        CredentialType::SigningCertificate => format!("cert {}", f.access_key_id),
    }
}

/// What acting does, in the table's words.
fn verb(a: Action) -> &'static str {
    match a {
        // The credential column already says "password".
        Action::DeleteLoginProfile => "delete",
        _ => "deactivate",
    }
}

/// `head` and the comma-separated `items`, in lines of at most `width` characters (an item
/// longer than a line stays whole); continuation lines are indented by two spaces.
fn wrapped(head: &str, items: &[String], width: usize) -> String {
    let mut out = String::new();
    let mut line = head.to_string();
    let mut fresh = true;
    for (i, item) in items.iter().enumerate() {
        let piece = if i + 1 < items.len() {
            format!("{item},")
        } else {
            item.clone()
        };
        if !fresh && line.chars().count() + 1 + piece.chars().count() > width {
            out.push_str(&line);
            out.push('\n');
            line = format!("  {piece}");
        } else {
            line.push(' ');
            line.push_str(&piece);
        }
        fresh = false;
    }
    out.push_str(&line);
    out.push('\n');
    out
}

fn action(f: &Finding, now: Timestamp) -> String {
    match (f.exempt, f.action, f.deactivate_after) {
        (true, _, _) => format!("exempt: {}", f.exemption_reason.as_deref().unwrap_or("")),
        _ if f.own_credentials => "report: own key".to_string(),
        _ if f.held.is_some() => match f.held.and_then(|h| h.until()) {
            Some(until) => format!("held: live to {}", until.format("%m-%d")),
            None => "held: kept key unused".to_string(),
        },
        (false, a, Some(d)) if a.acts() && f.waiting_for_window => {
            format!("in window {}", d.format("%m-%d %H:%M"))
        }
        (false, a, Some(d)) if a.acts() && d <= now => format!("{} now", verb(a)),
        (false, a, Some(d)) if a.acts() => format!("{} {}", verb(a), d.format("%Y-%m-%d")),
        _ => "report".to_string(),
    }
}

fn summary(out: &mut String, r: &Report) {
    let s = &r.summary;
    let evaluated = crate::sys::timefmt::format(&r.evaluated_at);
    let _ = writeln!(out, "Evaluated at {evaluated} ({})", r.mode);
    let unread = if s.unreadable_users > 0 {
        format!(" ({} could not be read)", s.unreadable_users)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "Users {}{unread}, access keys {} ({} active), accounts {}",
        s.users,
        s.access_keys,
        s.active_access_keys,
        r.accounts.len()
    );
    // The key rules always (a zero is news), the others when they found something, wrapped
    // to stay within 80 columns.
    let by_rule: Vec<String> = Rule::ALL
        .iter()
        .map(|r| (r, s.violations_by_rule.get(r).copied().unwrap_or(0)))
        .filter(|(r, n)| r.is_about_keys() || *n > 0)
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    let head = if r.complete {
        format!("Violations {}:", s.violations)
    } else {
        format!(
            "Violations not known (incomplete); among what was read {}:",
            s.violations
        )
    };
    out.push_str(&wrapped(&head, &by_rule, 80));
    let _ = writeln!(
        out,
        "Exempt {}, planned deactivations {}",
        s.exempt, s.planned_deactivations
    );
    let rotations = s.held_deactivations - s.live_holds;
    if rotations > 0 {
        let _ = writeln!(
            out,
            "Held {rotations}: rotations in progress, deactivated once the kept key has been used",
        );
    }
    if s.live_holds > 0 {
        let _ = writeln!(
            out,
            "Held {}: in live use (usage.hold_live_keys), due again when the hold ends",
            s.live_holds
        );
    }
    let mut own: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.own_credentials)
        .map(|f| f.access_key_id.as_str())
        .collect();
    own.dedup();
    for id in own {
        let _ = writeln!(
            out,
            "{id} is keywarden's own key: never deactivated by keywarden, rotate it"
        );
    }
    let root = match s.root_access_keys_present {
        Some(true) => "YES (CIS 1.4: remove them)",
        Some(false) => "no",
        None => "unknown",
    };
    let _ = writeln!(out, "Root access keys present: {root}");
}

/// Shown first: what failed, what to do, and each failed read (the first 20).
fn errors(out: &mut String, r: &Report) {
    let Some(headline) = r.failure_headline() else {
        return;
    };
    let _ = writeln!(out, "{headline}");
    if let Some(hint) = r.failure_hint() {
        let _ = writeln!(out, "{hint}");
    }
    const SHOWN: usize = 20;
    for e in r.errors.iter().take(SHOWN) {
        let who = e.user.as_deref().unwrap_or("(account)");
        let _ = writeln!(out, "  {} {} {}: {}", e.account_id, who, e.operation, e.message);
    }
    if r.errors.len() > SHOWN {
        let _ = writeln!(
            out,
            "  ... and {} more (--format json lists every one)",
            r.errors.len() - SHOWN
        );
    }
    out.push('\n');
}

fn short_age(now: Timestamp, then: Timestamp) -> String {
    let secs = now.signed_duration_since(then).num_seconds().max(0);
    match secs {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_violations_by_rule_wrap_within_80_columns() {
        let every: Vec<String> = Rule::ALL.iter().map(|r| format!("{r} 12")).collect();
        let text = wrapped("Violations 84:", &every, 80);
        assert!(text.lines().count() > 1, "{text}");
        assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
        assert_eq!(
            text.split_whitespace().collect::<Vec<_>>().join(" "),
            format!("Violations 84: {}", every.join(", ")),
            "nothing lost or reordered"
        );
        let short = wrapped("Violations 1:", &["unused_key 1".to_string()], 80);
        assert_eq!(short, "Violations 1: unused_key 1\n");
    }
}
