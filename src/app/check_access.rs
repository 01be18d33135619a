//! `keywarden check-access`: every action the configuration needs, per account and for the
//! ambient credentials, and whether these credentials may call it.
//!
//! The steps: the features the config uses (`features`), the accounts as a run connects them
//! (`Fleet::connect`: discovery and AssumeRole, whose failures are reported), then for the
//! ambient principal and for each account's principal the needs of `core::access` put to
//! IAM's policy simulator (`aws::simulate`). Nothing is changed and no audited action is
//! called: the simulator answers for them.

use crate::aws::accounts::Fleet;
use crate::config::{Config, StateBackend};
use crate::core::access::{self, AccessReport, Checked, Features, Need, Scope, Verdict};
use crate::core::arn::partition;
use crate::ports::InventoryMode;

/// The features of `config` that need permissions; `ambient_account` names the state table.
pub fn features(config: &Config, ambient_account: &str) -> Features {
    let region = config.aws.region.clone().unwrap_or_else(|| "us-east-1".to_string());
    let p = partition(&region);
    let exposed = &config.policy.rules.exposed_key;
    let mut role_arns: Vec<String> = config.aws.accounts.iter().filter_map(|a| a.role_arn.clone()).collect();
    if let Some(org) = &config.aws.organization {
        role_arns.push(format!("arn:{p}:iam::*:role/{}", org.role_name));
    }
    let state_table = match &config.backend {
        StateBackend::DynamoDb(d) => {
            let r = d.region.as_deref().unwrap_or(&region);
            Some(format!(
                "arn:{}:dynamodb:{r}:{ambient_account}:table/{}",
                partition(r),
                d.table
            ))
        }
        StateBackend::File => None,
    };
    Features {
        api_reads: config.aws.inventory != InventoryMode::CredentialReport,
        credential_report: config.aws.inventory != InventoryMode::Api,
        tags: config.needs_tags(),
        enforce: config.enforcement.mode == crate::core::policy::Mode::Enforce,
        exposure: exposed.enabled,
        revoke_sessions: exposed.enabled
            && exposed.action == crate::core::policy::Action::Deactivate
            && config.policy.revoke_sessions,
        rotation: config.auto_rotation().then(|| access::RotationScope {
            region: config.rotation.region.clone().unwrap_or_else(|| region.clone()),
            secret_prefix: config.rotation.secret_prefix.clone(),
        }),
        organization: config.aws.organization.is_some(),
        role_arns,
        state_table,
        security_hub_region: config
            .security_hub
            .as_ref()
            .map(|h| h.region.clone().unwrap_or_else(|| region.clone())),
        events_queue: config
            .events
            .as_ref()
            .and_then(|e| access::queue_arn(&e.queue_url, e.region.as_deref().unwrap_or(&region))),
        usage_queue: config
            .usage
            .queue_url
            .as_deref()
            .filter(|_| config.usage.enabled)
            .and_then(|url| access::queue_arn(url, config.usage.region.as_deref().unwrap_or(&region))),
        usage_backfill: config.usage.enabled,
        credentials: config.policy.rules.credential_kinds(),
        credential_deactivations: config.policy.rules.credential_deactivations(),
    }
}

/// Checks every need of `config` with the credentials the run would use.
pub async fn check_access(config: &Config) -> AccessReport {
    let mut report = AccessReport::default();
    let ambient = crate::aws::sdk_config(&config.aws).await;
    let known_roles: Vec<String> = config.aws.accounts.iter().filter_map(|a| a.role_arn.clone()).collect();
    let ambient_account = match crate::aws::caller_identity(&ambient, None).await {
        Ok((id, _)) => id,
        Err(e) => {
            report
                .errors
                .push(format!("the ambient credentials: GetCallerIdentity: {e}"));
            return report;
        }
    };
    let wanted = features(config, &ambient_account);
    let ambient_needs: Vec<Need> = access::needs(&wanted, &ambient_account, "aws")
        .into_iter()
        .filter(|n| n.scope == Scope::Ambient)
        .collect();
    if !ambient_needs.is_empty() {
        push(
            &mut report,
            check_one(&ambient, Scope::Ambient, &ambient_account, ambient_needs, &known_roles).await,
        );
    }
    let fleet = Fleet::connect(&config.aws, None).await;
    for failed in fleet.failed() {
        for e in &failed.errors {
            report
                .errors
                .push(format!("account {}: {}: {}", e.account_id, e.operation, e.message));
        }
    }
    for (account_id, sdk) in fleet.sdks() {
        let region = sdk.region().map(|r| r.to_string()).unwrap_or_default();
        let needs: Vec<Need> = access::needs(&wanted, account_id, partition(&region))
            .into_iter()
            .filter(|n| n.scope == Scope::Account)
            .collect();
        push(
            &mut report,
            check_one(sdk, Scope::Account, account_id, needs, &known_roles).await,
        );
    }
    report
}

fn push(report: &mut AccessReport, checked: Result<Checked, String>) {
    match checked {
        Ok(c) => report.checked.push(c),
        Err(e) => report.errors.push(e),
    }
}

/// One principal's needs, simulated (or all unknown, with the reason).
async fn check_one(
    sdk: &aws_config::SdkConfig,
    scope: Scope,
    account_id: &str,
    needs: Vec<Need>,
    known_roles: &[String],
) -> Result<Checked, String> {
    let (caller, simulated) = crate::aws::simulate::principal(sdk, known_roles)
        .await
        .map_err(|e| format!("account {account_id}: GetCallerIdentity: {e}"))?;
    let verdicts = match &simulated {
        Ok(arn) => crate::aws::simulate::simulate(sdk, arn, &needs).await,
        Err(why) => needs.iter().map(|_| Verdict::Unknown(why.clone())).collect(),
    };
    Ok(Checked {
        scope,
        account_id: account_id.to_string(),
        caller,
        simulated,
        results: needs.into_iter().zip(verdicts).collect(),
    })
}
