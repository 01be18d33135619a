//! The SDK's set-up, shared by every client: credentials, region, retries (adaptive, a refused
//! connection never: `errors::NoRetryOnRefusal` is added per client), timeouts and the TLS
//! connector (`sdk_config`); the interceptor that counts every attempt (`CountAttempts`), and
//! where a client's requests go, for messages (`endpoint_of`).

use std::sync::Arc;
use std::time::Duration;

use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_iam::config::interceptors::FinalizerInterceptorContextRef;
use aws_sdk_iam::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_iam::error::BoxError;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_runtime_api::client::orchestrator::Metadata;

use crate::config::AwsSettings;
use crate::ports::RequestObserver;

/// IAM is a global service signed in us-east-1 in the commercial partition; used when no
/// region is configured anywhere, instead of probing instance metadata for one.
pub(crate) const DEFAULT_REGION: &str = "us-east-1";

pub async fn sdk_config(s: &AwsSettings) -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        // Adaptive mode rate-limits the client itself after throttling, so a large audit
        // slows down instead of failing.
        .retry_config(
            RetryConfig::adaptive()
                .with_max_attempts(s.max_attempts)
                .with_max_backoff(Duration::from_secs(20)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(s.connect_timeout)
                .operation_attempt_timeout(s.attempt_timeout)
                .operation_timeout(s.operation_timeout)
                .build(),
        );
    if let Some(p) = &s.profile {
        loader = loader.profile_name(p);
    }
    crate::aws::credentials::configured_profile(s.profile.as_deref());
    if let Some(e) = &s.endpoint_url {
        loader = loader.endpoint_url(e);
    }
    loader = loader.region(resolve_region(s).await);
    loader.load().await
}

/// Config, then the environment and the profile file; never instance metadata, which costs
/// seconds off EC2 and is pointless for a global service.
async fn resolve_region(s: &AwsSettings) -> Region {
    if let Some(r) = &s.region {
        return Region::new(r.clone());
    }
    let mut profile = aws_config::profile::ProfileFileRegionProvider::builder();
    if let Some(p) = &s.profile {
        profile = profile.profile_name(p);
    }
    RegionProviderChain::first_try(aws_config::environment::EnvironmentVariableRegionProvider::new())
        .or_else(profile.build())
        .region()
        .await
        .unwrap_or_else(|| Region::from_static(DEFAULT_REGION))
}

/// An SDK interceptor that reports each attempt to a [`RequestObserver`].
#[derive(Debug)]
pub(crate) struct CountAttempts(pub(crate) Arc<dyn RequestObserver>);

impl Intercept for CountAttempts {
    fn name(&self) -> &'static str {
        "keywarden::CountAttempts"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg.load::<Metadata>().map(|m| m.name()).unwrap_or("unknown");
        let outcome = match context.response() {
            None => "transport_error",
            Some(r) => classify(r.status().as_u16(), r.body().bytes()),
        };
        self.0.attempt(operation, outcome);
        let date = context
            .response()
            .and_then(|r| r.headers().get("date"))
            .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok());
        if let Some(d) = date {
            // Date has whole seconds: up to a second of skew is the header's own rounding.
            let skew = chrono::Utc::now().signed_duration_since(d).num_milliseconds() as f64 / 1000.0;
            self.0.clock_skew(skew);
        }
        Ok(())
    }
}

/// IAM signals throttling with HTTP 400 and `<Code>Throttling</Code>`, DynamoDB with 400 and
/// a `ThrottlingException` or `ProvisionedThroughputExceededException` type (429 elsewhere).
fn classify(status: u16, body: Option<&[u8]>) -> &'static str {
    let throttled = || {
        body.is_some_and(|b| {
            let has = |needle: &[u8]| b.windows(needle.len()).any(|w| w == needle);
            has(b"<Code>Throttling") || has(b"#ThrottlingException") || has(b"#ProvisionedThroughputExceeded")
        })
    };
    match status {
        200..=299 => "success",
        429 => "throttled",
        400 if throttled() => "throttled",
        400..=499 => "client_error",
        _ => "server_error",
    }
}

/// Where a client of `service` sends its requests, for messages: `aws.endpoint_url` when set,
/// else the service's own endpoint for the region.
pub(crate) fn endpoint_of(sdk: &SdkConfig, service: &str) -> String {
    match sdk.endpoint_url() {
        Some(url) => url.to_string(),
        None => format!(
            "{service}'s endpoint in {}",
            sdk.region().map_or(DEFAULT_REGION, |r| r.as_ref())
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::classify;

    #[test]
    fn attempts_are_classified_by_status_and_iam_error_code() {
        assert_eq!(classify(200, None), "success");
        let throttle = b"<ErrorResponse><Error><Code>Throttling</Code></Error></ErrorResponse>";
        assert_eq!(classify(400, Some(throttle)), "throttled");
        assert_eq!(classify(429, None), "throttled");
        assert_eq!(classify(400, Some(b"<Code>ValidationError</Code>")), "client_error");
        assert_eq!(classify(403, None), "client_error");
        assert_eq!(classify(503, None), "server_error");
        let ddb = br#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"}"#;
        assert_eq!(classify(400, Some(ddb)), "throttled");
        let cond = br#"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"}"#;
        assert_eq!(classify(400, Some(cond)), "client_error");
    }
}
