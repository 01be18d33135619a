//! Who the credentials are (STS GetCallerIdentity) and which accounts an organization has
//! (Organizations ListAccounts): what `accounts` needs before any account is read.

use std::sync::Arc;

use aws_config::SdkConfig;

use crate::aws::errors::{describe_at, NoRetryOnRefusal};
use crate::aws::sdk::{endpoint_of, CountAttempts};
use crate::ports::RequestObserver;

/// STS GetCallerIdentity: the account id and ARN the credentials of `sdk` act as.
pub async fn caller_identity(
    sdk: &SdkConfig,
    observer: Option<Arc<dyn RequestObserver>>,
) -> Result<(String, String), String> {
    let mut conf = aws_sdk_sts::config::Builder::from(sdk).retry_classifier(NoRetryOnRefusal);
    if let Some(o) = observer {
        conf = conf.interceptor(CountAttempts(o));
    }
    let id = aws_sdk_sts::Client::from_conf(conf.build())
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| describe_at(&e, &endpoint_of(sdk, "STS")).message)?;
    match (id.account, id.arn) {
        (Some(account), Some(arn)) if !account.is_empty() => Ok((account, arn)),
        _ => Err("the response has no account id".into()),
    }
}

/// An organization member account, from organizations:ListAccounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub name: String,
    /// Status ACTIVE (suspended and closing accounts are not read).
    pub active: bool,
}

/// organizations:ListAccounts, every page, with the ambient credentials (the management or a
/// delegated administrator account).
pub async fn organization_members(
    sdk: &SdkConfig,
    observer: Option<Arc<dyn RequestObserver>>,
) -> Result<Vec<Member>, String> {
    let mut conf = aws_sdk_organizations::config::Builder::from(sdk).retry_classifier(NoRetryOnRefusal);
    if let Some(o) = observer {
        conf = conf.interceptor(CountAttempts(o));
    }
    let client = aws_sdk_organizations::Client::from_conf(conf.build());
    let pages: Vec<_> = client
        .list_accounts()
        .into_paginator()
        .send()
        .try_collect()
        .await
        .map_err(|e| describe_at(&e, &endpoint_of(sdk, "Organizations")).message)?;
    pages
        .into_iter()
        .flat_map(|p| p.accounts.unwrap_or_default())
        .map(|a| {
            let id = a.id.ok_or("an account without Id")?;
            Ok(Member {
                name: a.name.unwrap_or_else(|| id.clone()),
                active: a.status == Some(aws_sdk_organizations::types::AccountStatus::Active),
                id,
            })
        })
        .collect()
}
