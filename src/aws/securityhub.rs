//! Security Hub's `BatchImportFindings` and `GetFindings` for one account, signed here (SigV4
//! by `aws-sigv4`, sent by the SDK's own HTTP connector with its TLS settings).
//!
//! Why not `aws-sdk-securityhub`: it is 370,000 lines of generated code (IAM's is 220,000) for
//! two REST-JSON calls whose bodies are plain ASFF, which `output::asff` writes anyway; it would
//! add minutes to every clean build. What the SDK would give is kept: the credentials chain of
//! the account's `SdkConfig`, `aws.max_attempts` with exponential backoff on throttling, 5xx
//! and transport errors, the attempt timeout, the request budget (`aws.max_requests_per_second`,
//! and Security Hub's own 10 per second for imports) and every attempt counted like IAM's.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_smithy_http_client::Connector;
use aws_smithy_runtime_api::http::Request as SmithyRequest;
use serde_json::{json, Value};

use crate::aws::ratelimit::TokenBucket;
use crate::config::{AwsSettings, SecurityHubSettings};
use crate::ports::RequestObserver;

/// Security Hub accepts at most this many findings per `BatchImportFindings`.
pub const MAX_BATCH: usize = 100;
/// `BatchImportFindings`' own rate limit (10 per second, bursts of 30).
const IMPORT_RATE: f64 = 10.0;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Security Hub answered with an error: `code` is its error type (`AccessDeniedException`,
    /// `InvalidAccessException` when Security Hub is not enabled, ...).
    #[error("{operation}: {code} (HTTP {status}): {message}")]
    Service {
        operation: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{operation}: no answer: {message}")]
    Transport { operation: &'static str, message: String },
    #[error("{operation}: no credentials: {message}")]
    Credentials { operation: &'static str, message: String },
}

impl HubError {
    /// The error code for metrics and logs (`transport`, `credentials` or the service's code).
    pub fn code(&self) -> &str {
        match self {
            HubError::Service { code, .. } => code,
            HubError::Transport { .. } => "transport",
            HubError::Credentials { .. } => "credentials",
        }
    }
}

/// One finding Security Hub refused in an otherwise answered import.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub id: String,
    pub code: String,
    pub message: String,
}

/// The Security Hub of one account, in the configured region.
pub struct SecurityHub {
    connector: Arc<Connector>,
    credentials: crate::aws::credentials::Cached,
    region: String,
    endpoint: String,
    max_attempts: u32,
    attempt_timeout: Duration,
    budget: TokenBucket,
    observer: Option<Arc<dyn RequestObserver>>,
}

impl std::fmt::Debug for SecurityHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecurityHub({}, {})", self.region, self.endpoint)
    }
}

impl SecurityHub {
    /// The HTTP connector (connection pool, TLS): one per export, shared by its accounts.
    pub fn connector() -> Arc<Connector> {
        crate::aws::sigv4::connector()
    }

    /// `sdk` carries the account's credentials (the ambient ones, or an assumed role's).
    pub fn new(
        connector: Arc<Connector>,
        sdk: &SdkConfig,
        hub: &SecurityHubSettings,
        aws: &AwsSettings,
        observer: Option<Arc<dyn RequestObserver>>,
    ) -> Result<SecurityHub, HubError> {
        let credentials = sdk.credentials_provider().ok_or_else(|| HubError::Credentials {
            operation: "BatchImportFindings",
            message: "no credentials provider is configured".into(),
        })?;
        let endpoint_url = hub.endpoint_url.as_deref().or(aws.endpoint_url.as_deref());
        let (region, endpoint) = crate::aws::sigv4::locate(sdk, "securityhub", hub.region.as_deref(), endpoint_url);
        let rate = f64::from(aws.max_requests_per_second.max(1)).min(IMPORT_RATE);
        Ok(SecurityHub {
            connector,
            credentials: crate::aws::credentials::Cached::new(credentials),
            region,
            endpoint,
            max_attempts: aws.max_attempts.max(1),
            attempt_timeout: aws.attempt_timeout,
            budget: TokenBucket::new(rate, rate),
            observer,
        })
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Imports up to [`MAX_BATCH`] findings; the findings Security Hub refused come back.
    pub async fn import(&self, findings: &[Value]) -> Result<Vec<Refused>, HubError> {
        let answer = self
            .call(
                "BatchImportFindings",
                "/findings/import",
                &json!({ "Findings": findings }),
            )
            .await?;
        let refused = answer["FailedFindings"].as_array().cloned().unwrap_or_default();
        Ok(refused
            .iter()
            .map(|f| Refused {
                id: f["Id"].as_str().unwrap_or_default().to_string(),
                code: f["ErrorCode"].as_str().unwrap_or_default().to_string(),
                message: f["ErrorMessage"].as_str().unwrap_or_default().to_string(),
            })
            .collect())
    }

    /// Every active finding of `product_arn` from `generator`, all pages. The filter is also
    /// applied here: what is archived must never depend on a server honouring it.
    pub async fn active(&self, product_arn: &str, generator: &str) -> Result<Vec<Value>, HubError> {
        let eq = |v: &str| json!([{ "Value": v, "Comparison": "EQUALS" }]);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({
                "Filters": {
                    "ProductArn": eq(product_arn),
                    "GeneratorId": eq(generator),
                    "RecordState": eq("ACTIVE"),
                },
                "MaxResults": 100,
            });
            if let Some(t) = &token {
                body["NextToken"] = json!(t);
            }
            let page = self.call("GetFindings", "/findings", &body).await?;
            for f in page["Findings"].as_array().into_iter().flatten() {
                if f["ProductArn"] == product_arn && f["GeneratorId"] == generator && f["RecordState"] == "ACTIVE" {
                    out.push(f.clone());
                }
            }
            token = page["NextToken"].as_str().filter(|t| !t.is_empty()).map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// One operation, retried on throttling, 5xx and transport errors.
    async fn call(&self, operation: &'static str, path: &str, body: &Value) -> Result<Value, HubError> {
        let body = serde_json::to_vec(body).unwrap_or_default();
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.budget.acquire().await;
            let result = tokio::time::timeout(self.attempt_timeout, self.attempt(operation, path, &body))
                .await
                .unwrap_or_else(|_| {
                    Err(HubError::Transport {
                        operation,
                        message: format!("no answer within {:?}", self.attempt_timeout),
                    })
                });
            let outcome = match &result {
                Ok(_) => "success",
                Err(e) if throttled(e) => "throttled",
                Err(HubError::Service { status, .. }) if *status < 500 => "client_error",
                Err(HubError::Service { .. }) => "server_error",
                Err(_) => "transport_error",
            };
            if let Some(o) = &self.observer {
                o.attempt(operation, outcome);
            }
            match result {
                Err(e) if attempt < self.max_attempts && retryable(&e) => {
                    tokio::time::sleep(backoff(attempt)).await;
                    tracing::debug!(error = %e, attempt, "Security Hub call failed; retrying");
                }
                other => return other,
            }
        }
    }

    async fn attempt(&self, operation: &'static str, path: &str, body: &[u8]) -> Result<Value, HubError> {
        let transport = |message: String| HubError::Transport { operation, message };
        let request = self.signed(operation, path, body).await?;
        let answer = crate::aws::sigv4::exchange(&self.connector, request)
            .await
            .map_err(transport)?;
        if answer.ok() {
            return Ok(answer.json);
        }
        Err(HubError::Service {
            operation,
            status: answer.status,
            code: answer.code(),
            message: answer.message(),
        })
    }

    /// The POST of `body` to `path`, signed with SigV4 for `securityhub` with the current
    /// credentials.
    async fn signed(&self, operation: &'static str, path: &str, body: &[u8]) -> Result<SmithyRequest, HubError> {
        let creds = self.credentials.get().await.map_err(|e| HubError::Credentials {
            operation,
            message: crate::aws::credentials::explain(&e).unwrap_or_else(|| crate::aws::credentials::chain_text(&e)),
        })?;
        let uri = format!("{}{path}", self.endpoint);
        let post = crate::aws::sigv4::Post {
            uri: &uri,
            region: &self.region,
            service: "securityhub",
            content_type: "application/json",
            target: None,
            body,
        };
        crate::aws::sigv4::signed_post(creds, &post).map_err(|message| HubError::Transport { operation, message })
    }
}

fn throttled(e: &HubError) -> bool {
    match e {
        HubError::Service { status: 429, .. } => true,
        HubError::Service { code, .. } => code.contains("Throttl") || code == "TooManyRequestsException",
        _ => false,
    }
}

fn retryable(e: &HubError) -> bool {
    match e {
        HubError::Service { status, .. } => *status >= 500 || throttled(e),
        HubError::Transport { .. } => true,
        HubError::Credentials { .. } => false,
    }
}

/// Exponential, capped at 20 s like the SDK's, with jitter from the clock's nanoseconds (so
/// that instances retrying together spread out).
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(200).saturating_mul(1 << attempt.min(7));
    let cap = base.min(Duration::from_secs(20));
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    cap.mul_f64(0.5 + f64::from(nanos % 1000) / 2000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(status: u16, code: &str) -> HubError {
        HubError::Service {
            operation: "BatchImportFindings",
            status,
            code: code.into(),
            message: String::new(),
        }
    }

    #[test]
    fn throttling_5xx_and_transport_are_retried_the_rest_not() {
        assert!(retryable(&service(429, "TooManyRequestsException")));
        assert!(retryable(&service(400, "ThrottlingException")));
        assert!(retryable(&service(503, "ServiceUnavailable")));
        assert!(retryable(&HubError::Transport {
            operation: "GetFindings",
            message: "reset".into()
        }));
        assert!(!retryable(&service(403, "AccessDeniedException")));
        assert!(!retryable(&service(401, "InvalidAccessException")));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) <= Duration::from_millis(400));
        assert!(backoff(3) >= Duration::from_millis(800));
        assert!(backoff(30) <= Duration::from_secs(20));
    }
}
