//! `check-access` as text (a line per action) and as JSON.

use serde_json::{json, Value};

use crate::core::access::{AccessReport, Scope, Verdict};

fn decision(v: &Verdict) -> (&'static str, Option<&str>) {
    match v {
        Verdict::Allowed => ("allowed", None),
        Verdict::Missing { explicit: false } => ("missing", None),
        Verdict::Missing { explicit: true } => ("denied", Some("an explicit Deny matches")),
        Verdict::Unknown(why) => ("unknown", Some(why.as_str())),
    }
}

fn whose(scope: Scope) -> &'static str {
    match scope {
        Scope::Ambient => "ambient",
        Scope::Account => "account",
    }
}

/// The text form: what could not be checked first (a run that could tell nothing says so
/// before anything else), a header per principal, then `DECISION  action  resource  (why)`,
/// and the verdict last.
pub fn to_table(r: &AccessReport) -> String {
    let mut out = String::new();
    let verdicts = || r.checked.iter().flat_map(|c| c.results.iter().map(|(_, v)| v));
    let total = verdicts().count();
    let unknown: Vec<&str> = verdicts()
        .filter_map(|v| match v {
            Verdict::Unknown(why) => Some(why.as_str()),
            _ => None,
        })
        .collect();
    if !unknown.is_empty() || !r.errors.is_empty() {
        out.push_str(&format!(
            "CANNOT TELL: {} of {total} action(s) could not be checked{}\n",
            unknown.len(),
            if r.errors.is_empty() {
                String::new()
            } else {
                format!(", and {} principal(s) could not be reached", r.errors.len())
            }
        ));
        let mut reasons: Vec<&str> = unknown.clone();
        reasons.sort_unstable();
        reasons.dedup();
        for why in reasons.iter().take(3) {
            out.push_str(&format!("  because: {why}\n"));
        }
        for e in &r.errors {
            out.push_str(&format!("  error: {e}\n"));
        }
        out.push('\n');
    }
    for c in &r.checked {
        let simulated = match &c.simulated {
            Ok(arn) if *arn == c.caller => String::new(),
            Ok(arn) => format!(" (simulated as {arn})"),
            Err(why) => format!(" (cannot tell: {why})"),
        };
        let what = match c.scope {
            Scope::Ambient => "the ambient credentials".to_string(),
            Scope::Account => format!("account {}", c.account_id),
        };
        out.push_str(&format!("{what}: {}{simulated}\n", c.caller));
        for (n, v) in &c.results {
            let (d, _) = decision(v);
            out.push_str(&format!(
                "  {:<8} {:<34} {}  ({})\n",
                d.to_uppercase(),
                n.action,
                n.resource,
                n.why
            ));
        }
    }
    let missing = r.missing();
    if missing.is_empty() && (!unknown.is_empty() || !r.errors.is_empty()) {
        out.push_str(&format!(
            "not known whether anything is missing: {} action(s) UNKNOWN (see the reason at the top)\n",
            unknown.len()
        ));
    } else if missing.is_empty() {
        out.push_str("nothing missing\n");
    } else {
        out.push_str(&format!("missing ({}):\n", missing.len()));
        for m in missing {
            out.push_str(&format!("  {m}\n"));
        }
    }
    out
}

/// The JSON form: `checked` (per principal, each action's decision), `errors`, `missing`.
pub fn to_json(r: &AccessReport) -> String {
    let checked: Vec<Value> = r
        .checked
        .iter()
        .map(|c| {
            let results: Vec<Value> = c
                .results
                .iter()
                .map(|(n, v)| {
                    let (d, detail) = decision(v);
                    json!({"action": n.action, "resource": n.resource, "why": n.why, "decision": d, "detail": detail})
                })
                .collect();
            json!({
                "scope": whose(c.scope),
                "account_id": c.account_id,
                "caller": c.caller,
                "simulated_as": c.simulated.as_ref().ok(),
                "cannot_tell": c.simulated.as_ref().err(),
                "results": results,
            })
        })
        .collect();
    let doc = json!({"checked": checked, "errors": r.errors, "missing": r.missing(), "exit_code": r.exit_code()});
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}
