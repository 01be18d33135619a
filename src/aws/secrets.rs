//! Secrets Manager, for handing a rotated key over (`keywarden rotate`) or a reactivated
//! password's temporary value (`keywarden reactivate --password`): CreateSecret, or
//! PutSecretValue when the secret exists, in Secrets Manager's JSON protocol, signed here
//! (`aws::sigv4`) and sent by the SDK's connector, as SQS and Security Hub are: two calls do
//! not warrant another SDK crate.
//!
//! The secret's value passes through here once: the request body is built in a buffer that is
//! wiped when dropped, and no error or log line carries it.

use aws_config::SdkConfig;
use serde_json::json;
use zeroize::Zeroizing;

use crate::aws::sigv4::JsonService;
use crate::core::model::ServiceError;

/// One account's Secrets Manager, with that account's credentials.
pub struct SecretStore {
    service: JsonService,
}

impl SecretStore {
    /// `region`: default the SDK's; `endpoint_url`: default Secrets Manager's regional one.
    pub fn new(sdk: &SdkConfig, region: Option<&str>, endpoint_url: Option<&str>) -> Result<SecretStore, ServiceError> {
        let service = JsonService::new(sdk, "secretsmanager", "Secrets Manager", region, endpoint_url)?;
        Ok(SecretStore { service })
    }

    /// Stores `value` as the current version of the secret `name`: creates the secret, or adds
    /// a version when it exists (the old value stays as AWSPREVIOUS). Returns the secret's ARN.
    pub async fn put(&self, name: &str, description: &str, value: &Zeroizing<String>) -> Result<String, ServiceError> {
        let create = json!({
            "Name": name,
            "Description": description,
            "SecretString": value.as_str(),
        });
        let body = Zeroizing::new(create.to_string().into_bytes());
        drop(create);
        match self.call("CreateSecret", &body).await {
            Err(e) if e.is("ResourceExistsException") => {}
            done => return done,
        }
        let put = json!({"SecretId": name, "SecretString": value.as_str()});
        let body = Zeroizing::new(put.to_string().into_bytes());
        drop(put);
        self.call("PutSecretValue", &body).await
    }

    /// One call; the secret's ARN from its answer.
    async fn call(&self, operation: &str, body: &[u8]) -> Result<String, ServiceError> {
        let answer = self
            .service
            .call(operation, &format!("secretsmanager.{operation}"), body)
            .await?;
        answer["ARN"].as_str().map(str::to_string).ok_or_else(|| ServiceError {
            code: None,
            message: format!("Secrets Manager {operation}: the answer names no ARN"),
        })
    }
}
