//! The controls each rule checks, as auditors name them: CIS AWS Foundations Benchmark
//! recommendations per version (renumbered between versions) and AWS Security Hub controls.
//!
//! Where each id comes from (each benchmark's own recommendation titles):
//! - CIS v1.4.0 and v3.0.0: 1.12 "Ensure credentials unused for 45 days or greater are
//!   disabled", 1.13 "Ensure there is only one active access key available for any single IAM
//!   user", 1.14 "Ensure access keys are rotated every 90 days or less".
//! - CIS v5.0.0: the same three recommendations as 1.11, 1.12 and 1.13 (a recommendation
//!   before them was removed, so they moved up by one).
//! - Security Hub: IAM.3 "IAM users' access keys should be rotated every 90 days or less"
//!   (related requirement CIS 1.14 of v1.4.0/v3.0.0) and IAM.22 "IAM user credentials unused
//!   for 45 days should be removed" (CIS 1.12). Security Hub has no control for one active key
//!   per user, so `multiple_active_keys` names CIS recommendations only.
//! - `exposed_key` has no control id: no CIS recommendation and no Security Hub control checks
//!   for a key AWS found in public (Security Hub's IAM.1-IAM.28 are about policies, MFA, root,
//!   rotation and unused credentials; GuardDuty and Health report the exposure itself). Its
//!   list is empty on purpose, and its ASFF finding is CRITICAL instead.
//! - `unused_password` checks the same recommendation as `unused_key` (CIS 1.12 of v1.4.0 and
//!   v3.0.0, 1.11 of v5.0.0, "credentials unused", which names passwords and keys alike) and
//!   Security Hub's IAM.22, whose description names console passwords too.
//! - `max_credential_age` and `long_term_service_credential` have no control id: the CIS
//!   rotation recommendation and Security Hub's IAM.3 are about access keys only, and no
//!   published control checks SSH keys, service-specific credentials or signing certificates.
//! - CIS v7.0.0 moved the IAM recommendations to section 2. Confirmed from a published
//!   source (Tenable's audit file for CIS Amazon Web Services Foundations v7.0.0 Level 1, item
//!   2.11 "Ensure credentials unused for 45 days or more are disabled"): 2.11, for `unused_key`
//!   and `unused_password`. The numbers of one active key per user and of key rotation in
//!   v7.0.0 could not be confirmed from a published source (a third-party listing names a
//!   "2.12" for one active key without saying of which version): they are left out, as a
//!   guessed number is worse than none.

use crate::core::policy::Rule;

/// Ids in the contract's form (`CIS-v1.4.0:1.13`, `SecurityHub:IAM.3`), benchmark versions
/// oldest first, Security Hub last.
pub fn of(rule: Rule) -> &'static [&'static str] {
    match rule {
        Rule::ExposedKey => &[],
        Rule::MaxCredentialAge | Rule::LongTermServiceCredential => &[],
        Rule::UnusedKey | Rule::UnusedPassword => &[
            "CIS-v1.4.0:1.12",
            "CIS-v3.0.0:1.12",
            "CIS-v5.0.0:1.11",
            "CIS-v7.0.0:2.11",
            "SecurityHub:IAM.22",
        ],
        Rule::MultipleActiveKeys => &["CIS-v1.4.0:1.13", "CIS-v3.0.0:1.13", "CIS-v5.0.0:1.12"],
        Rule::MaxKeyAge => &[
            "CIS-v1.4.0:1.14",
            "CIS-v3.0.0:1.14",
            "CIS-v5.0.0:1.13",
            "SecurityHub:IAM.3",
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_names_each_cis_version_once_and_v5_is_renumbered() {
        for rule in [
            Rule::ExposedKey,
            Rule::MaxCredentialAge,
            Rule::LongTermServiceCredential,
        ] {
            assert!(of(rule).is_empty(), "no benchmark names {rule}");
        }
        for rule in Rule::ALL.into_iter().filter(|r| !of(*r).is_empty()) {
            let ids = of(rule);
            for v in ["CIS-v1.4.0:", "CIS-v3.0.0:", "CIS-v5.0.0:"] {
                assert_eq!(ids.iter().filter(|i| i.starts_with(v)).count(), 1, "{rule} {v}");
            }
            let number = |v: &str| -> f64 {
                let id = ids.iter().find(|i| i.starts_with(v)).unwrap();
                id.rsplit(':').next().unwrap().trim_start_matches("1.").parse().unwrap()
            };
            assert_eq!(number("CIS-v1.4.0:"), number("CIS-v3.0.0:"), "{rule}");
            assert_eq!(number("CIS-v5.0.0:"), number("CIS-v1.4.0:") - 1.0, "{rule}");
        }
        assert_eq!(of(Rule::MaxKeyAge).last(), Some(&"SecurityHub:IAM.3"));
        assert_eq!(of(Rule::UnusedKey).last(), Some(&"SecurityHub:IAM.22"));
        assert_eq!(
            of(Rule::UnusedPassword),
            of(Rule::UnusedKey),
            "one recommendation for both"
        );
        assert_eq!(Rule::ALL.into_iter().filter(|r| !of(*r).is_empty()).count(), 4);
        // v7.0.0: only the number a published source confirms.
        let v7: Vec<(Rule, &str)> = Rule::ALL
            .into_iter()
            .flat_map(|r| {
                of(r)
                    .iter()
                    .filter(|i| i.starts_with("CIS-v7.0.0:"))
                    .map(move |i| (r, *i))
            })
            .collect();
        assert_eq!(
            v7,
            [
                (Rule::UnusedKey, "CIS-v7.0.0:2.11"),
                (Rule::UnusedPassword, "CIS-v7.0.0:2.11")
            ]
        );
    }
}
