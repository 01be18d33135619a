//! The AWS edge, one module per service or job: the SDK's set-up shared by every client
//! (`sdk`), the IAM client of one account (`iam`) and a user's credentials beyond its access
//! keys (`user_credentials`), who the credentials are and an
//! organization's accounts (`identity`), which accounts a run reads and how (`accounts`), the credential report
//! parser (`credential_report`), the per-account request budget (`ratelimit`), what to do when
//! the credentials cannot be had (`credentials`), errors in the service's words and the retry of
//! refused connections (`errors`), the policy simulator (`simulate`), and the services signed by
//! hand over the SDK's connector (`sigv4`): the events queue (`sqs`, with `eventbridge` for its
//! envelopes), Secrets Manager (`secrets`), Security Hub (`securityhub`) and CloudTrail's
//! LookupEvents for the usage backfill (`cloudtrail`).

pub mod accounts;
pub mod cloudtrail;
pub mod credential_report;
pub mod credentials;
pub mod errors;
pub mod eventbridge;
pub mod iam;
pub mod identity;
pub mod ratelimit;
pub mod sdk;
pub mod secrets;
pub mod securityhub;
pub mod sigv4;
pub mod simulate;
pub mod sqs;
pub mod user_credentials;

pub use iam::{account_error, Iam};
pub use identity::{caller_identity, organization_members, Member};
pub use sdk::sdk_config;
