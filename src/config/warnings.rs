//! What is valid but probably not meant: said by `check-config` and `audit` (on stderr) and
//! logged by the daemon, never an error (the config still loads).

use super::suggest::closest;
use super::{Config, Issue};
use crate::core::model::{AccountInventory, Timestamp};

impl Config {
    /// Exemptions that expired (they exempt nothing any more) and, given the accounts a run
    /// read completely, exemptions whose `user` matches no user in any of them: a typo in a
    /// break-glass exemption means that user's key is deactivated.
    pub fn warnings(&self, now: Timestamp, read: Option<&[AccountInventory]>) -> Vec<Issue> {
        let mut out = Vec::new();
        for (i, e) in self.policy.exemptions.iter().enumerate() {
            let at = |message: String| Issue {
                message,
                ..self.exemption_places.get(i).cloned().unwrap_or_else(|| Issue {
                    origin: "config".into(),
                    line: None,
                    key: Some(format!("exemptions.{i}")),
                    message: String::new(),
                })
            };
            if let Some(t) = e.expires.filter(|t| now >= *t) {
                out.push(at(format!(
                    "expired at {}: it exempts nothing any more (remove it, or move `expires`)",
                    crate::sys::timefmt::format(&t)
                )));
            }
            let (Some(pattern), Some(accounts)) = (&e.user, read) else {
                continue;
            };
            if accounts.is_empty() || accounts.iter().any(|a| !a.is_complete()) {
                continue;
            }
            let users = || accounts.iter().flat_map(|a| a.users.iter().map(|u| u.name.as_str()));
            if users().any(|u| pattern.matches(u)) {
                continue;
            }
            let hint = closest(pattern.as_str(), users())
                .map(|u| format!("; did you mean {u:?}?"))
                .unwrap_or_default();
            out.push(at(format!(
                "user {:?} matches no user of the {} account(s) read, so it exempts nothing{hint}",
                pattern.as_str(),
                accounts.len()
            )));
        }
        out
    }
}
