//! Secrets Manager, for handing a rotated key over (`keywarden rotate`) or a reactivated
//! password's temporary value (`keywarden reactivate --password`): CreateSecret, or
//! PutSecretValue when the secret exists, in Secrets Manager's JSON protocol, signed here
//! (`aws::sigv4`) and sent by the SDK's connector, as SQS and Security Hub are: two calls do
//! not warrant another SDK crate.
//!
//! The secret's value passes through here once: the request body is built in a buffer that is
//! wiped when dropped, and no error or log line carries it.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_smithy_http_client::Connector;
use serde_json::json;
use zeroize::Zeroizing;

use crate::aws::credentials::Cached;
use crate::core::model::ServiceError;

/// One account's Secrets Manager, with that account's credentials.
pub struct SecretStore {
    connector: Arc<Connector>,
    credentials: Cached,
    region: String,
    endpoint: String,
}

impl SecretStore {
    /// `region`: default the SDK's; `endpoint_url`: default Secrets Manager's regional one.
    pub fn new(sdk: &SdkConfig, region: Option<&str>, endpoint_url: Option<&str>) -> Result<SecretStore, ServiceError> {
        let credentials = sdk
            .credentials_provider()
            .ok_or_else(|| ServiceError::from("Secrets Manager: no credentials provider is configured"))?;
        let (region, endpoint) = crate::aws::sigv4::locate(sdk, "secretsmanager", region, endpoint_url);
        Ok(SecretStore {
            connector: crate::aws::securityhub::SecurityHub::connector(),
            credentials: Cached::new(credentials),
            region,
            endpoint,
        })
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
        let failed = |message: String| ServiceError {
            code: None,
            message: format!("Secrets Manager {operation}: {message}"),
        };
        let creds = self.credentials.get().await.map_err(|e| {
            failed(crate::aws::credentials::explain(&e).unwrap_or_else(|| crate::aws::credentials::chain_text(&e)))
        })?;
        let target = format!("secretsmanager.{operation}");
        let post = crate::aws::sigv4::Post {
            uri: &format!("{}/", self.endpoint),
            region: &self.region,
            service: "secretsmanager",
            content_type: "application/x-amz-json-1.1",
            target: Some(&target),
            body,
        };
        let request = crate::aws::sigv4::signed_post(creds, &post).map_err(failed)?;
        let timeout = Duration::from_secs(30);
        let answer = tokio::time::timeout(timeout, crate::aws::sigv4::exchange(&self.connector, request))
            .await
            .map_err(|_| failed(format!("no answer within {} s", timeout.as_secs())))?
            .map_err(failed)?;
        if !answer.ok() {
            let code = answer.code();
            return Err(ServiceError {
                message: format!("Secrets Manager {operation}: {code}: {}", answer.message()),
                code: Some(code),
            });
        }
        answer.json["ARN"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| failed("the answer names no ARN".into()))
    }
}
