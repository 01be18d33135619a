//! The inventory model: what one account's IAM users and access keys look like, as read.
//!
//! Plain data, no I/O. Every record is tied to an `account_id` so that nothing downstream
//! assumes a single account.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// All instants are UTC; ages and deadlines are computed on this type only.
pub type Timestamp = DateTime<Utc>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Inactive,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "Active",
            KeyStatus::Inactive => "Inactive",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccessKey {
    pub id: String,
    pub status: KeyStatus,
    pub created: Timestamp,
    /// `None` when the key was never used (or is inactive: last use is only read for active keys).
    pub last_used: Option<Timestamp>,
}

impl AccessKey {
    pub fn is_active(&self) -> bool {
        self.status == KeyStatus::Active
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct User {
    pub name: String,
    /// IAM path, e.g. `/` or `/service/`.
    pub path: String,
    /// Only read when an exemption matches on tags; empty otherwise.
    pub tags: Vec<(String, String)>,
    pub keys: Vec<AccessKey>,
}

/// A read that failed. A user with any failed read is left out of `AccountInventory::users`
/// entirely, so no decision is ever made on a partial view of that user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadError {
    pub account_id: String,
    /// `None` for account-level reads (ListUsers, GetAccountSummary, ...).
    pub user: Option<String>,
    pub operation: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AccountInventory {
    pub account_id: String,
    pub users: Vec<User>,
    /// `None` when GetAccountSummary could not be read.
    pub root_access_keys_present: Option<bool>,
    pub errors: Vec<ReadError>,
    /// Set when the inventory came from the IAM credential report.
    pub credential_report_generated: Option<Timestamp>,
    /// The access key keywarden itself signs with in this account, when it uses an IAM user's
    /// long-term key (none for roles): never deactivated.
    pub own_access_key_id: Option<String>,
}

impl AccountInventory {
    /// True when every read succeeded: only then is the account's answer complete.
    pub fn is_complete(&self) -> bool {
        self.errors.is_empty()
    }
}
