//! The AWS edge: the SDK's configuration and the IAM client of one account (`iam`), which
//! accounts a run reads and how (`accounts`), the credential report parser
//! (`credential_report`) and the per-account request budget (`ratelimit`).

pub mod accounts;
pub mod credential_report;
pub mod iam;
pub mod ratelimit;
pub mod securityhub;

pub use iam::{account_error, caller_identity, organization_members, sdk_config, Iam, Member};
