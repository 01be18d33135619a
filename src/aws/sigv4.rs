//! A POST signed with SigV4 (`aws-sigv4`), for the services keywarden calls without their SDK
//! crate (Security Hub, SQS, and through [`JsonService`] Secrets Manager and CloudTrail): the request is built here, sent by the SDK's own connector, and
//! its JSON answer read with the error code where AWS's JSON protocols put it.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_http_client::Connector;
use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_runtime_api::http::Request as SmithyRequest;
use aws_smithy_types::body::SdkBody;
use http_body_util::BodyExt;
use serde_json::Value;

/// What to POST where.
pub struct Post<'a> {
    pub uri: &'a str,
    pub region: &'a str,
    /// The signing name (`securityhub`, `sqs`).
    pub service: &'a str,
    pub content_type: &'a str,
    /// `X-Amz-Target`, for the JSON protocols that name the operation in it.
    pub target: Option<&'a str>,
    pub body: &'a [u8],
}

/// An HTTP connector (connection pool, rustls) for requests signed by hand.
pub fn connector() -> std::sync::Arc<Connector> {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    std::sync::Arc::new(
        Connector::builder()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build(),
    )
}

/// Where a service signed by hand is reached: its region (`region`, else the SDK's, else
/// us-east-1) and endpoint (`endpoint_url`, else the service's regional one, `.com.cn` in
/// China).
pub fn locate(
    sdk: &aws_config::SdkConfig,
    service: &str,
    region: Option<&str>,
    endpoint_url: Option<&str>,
) -> (String, String) {
    let region = region
        .map(str::to_string)
        .or_else(|| sdk.region().map(ToString::to_string))
        .unwrap_or_else(|| "us-east-1".into());
    let endpoint = match endpoint_url {
        Some(e) => e.trim_end_matches('/').to_string(),
        None if crate::core::arn::partition(&region) == "aws-cn" => {
            format!("https://{service}.{region}.amazonaws.com.cn")
        }
        None => format!("https://{service}.{region}.amazonaws.com"),
    };
    (region, endpoint)
}

/// The signed request, or why it could not be built.
pub fn signed_post(creds: Credentials, p: &Post<'_>) -> Result<SmithyRequest, String> {
    let mut builder = http::Request::builder()
        .method("POST")
        .uri(p.uri)
        .header("content-type", p.content_type)
        .header("user-agent", concat!("keywarden/", env!("CARGO_PKG_VERSION")));
    if let Some(t) = p.target {
        builder = builder.header("x-amz-target", t);
    }
    let mut request = builder.body(p.body.to_vec()).map_err(|e| e.to_string())?;
    let identity = creds.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(p.region)
        .name(p.service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let headers = request
        .headers()
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)));
    let signable =
        SignableRequest::new("POST", p.uri, headers, SignableBody::Bytes(p.body)).map_err(|e| e.to_string())?;
    let (instructions, _) = sign(signable, &params).map_err(|e| e.to_string())?.into_parts();
    instructions.apply_to_request_http1x(&mut request);
    SmithyRequest::try_from(request.map(SdkBody::from)).map_err(|e| e.to_string())
}

/// A service's answer: its status and JSON body (`Null` when the body is not JSON).
pub struct Answer {
    pub status: u16,
    pub json: Value,
    error_type: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    /// An answer as it arrived: its status, its `x-amzn-ErrorType` header, its body.
    pub fn read(status: u16, error_type: Option<&str>, body: Vec<u8>) -> Answer {
        Answer {
            status,
            json: serde_json::from_slice(&body).unwrap_or(Value::Null),
            error_type: error_type.and_then(|t| word(t.split(':').next().unwrap_or_default())),
            body,
        }
    }

    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The error code: the `x-amzn-ErrorType` header, else `__type` (without its namespace),
    /// `Code` or `code` in the body, else `Http<status>`.
    pub fn code(&self) -> String {
        let j = &self.json;
        self.error_type
            .clone()
            .or_else(|| {
                j["__type"]
                    .as_str()
                    .and_then(|t| word(t.rsplit('#').next().unwrap_or(t)))
            })
            .or_else(|| j["Code"].as_str().and_then(word))
            .or_else(|| j["code"].as_str().and_then(word))
            .unwrap_or_else(|| format!("Http{}", self.status))
    }

    /// The error message, else the body's first 300 characters.
    pub fn message(&self) -> String {
        self.json["Message"]
            .as_str()
            .or_else(|| self.json["message"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).chars().take(300).collect())
    }
}

/// Sends a signed request and reads the whole answer; `Err`: no answer (the transport's words).
pub async fn exchange(connector: &Connector, request: SmithyRequest) -> Result<Answer, String> {
    // scheme://host[:port], for the message when nothing answers.
    let endpoint: String = request.uri().split('/').take(3).collect::<Vec<_>>().join("/");
    let response = connector.call(request).await.map_err(|e| {
        format!(
            "could not connect to {endpoint}: {}",
            crate::aws::errors::unreachable(&e)
        )
    })?;
    let status = response.status().as_u16();
    let error_type = response.headers().get("x-amzn-errortype").map(str::to_string);
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes()
        .to_vec();
    Ok(Answer::read(status, error_type.as_deref(), body))
}

/// An error code as written, trimmed; blank is no code (the fuzzer sent `:...` as a header).
fn word(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// One account's service in a JSON protocol (`application/x-amz-json-1.1`, the operation in
/// `X-Amz-Target`), signed here with that account's credentials: Secrets Manager, CloudTrail.
pub struct JsonService {
    connector: std::sync::Arc<Connector>,
    credentials: crate::aws::credentials::Cached,
    region: String,
    endpoint: String,
    signing_name: &'static str,
    /// The service's name for people (`Secrets Manager`), the first words of every error.
    label: &'static str,
}

impl JsonService {
    /// `region`: default the SDK's; `endpoint_url`: default the service's regional one.
    pub fn new(
        sdk: &aws_config::SdkConfig,
        signing_name: &'static str,
        label: &'static str,
        region: Option<&str>,
        endpoint_url: Option<&str>,
    ) -> Result<JsonService, crate::core::model::ServiceError> {
        let credentials = sdk.credentials_provider().ok_or_else(|| {
            crate::core::model::ServiceError::from(format!("{label}: no credentials provider is configured").as_str())
        })?;
        let (region, endpoint) = locate(sdk, signing_name, region, endpoint_url);
        Ok(JsonService {
            connector: connector(),
            credentials: crate::aws::credentials::Cached::new(credentials),
            region,
            endpoint,
            signing_name,
            label,
        })
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// One call (`target`: the `X-Amz-Target` value, `operation`: its name for people) within
    /// 30 s; its JSON answer, or the service's code and message.
    pub async fn call(
        &self,
        operation: &str,
        target: &str,
        body: &[u8],
    ) -> Result<Value, crate::core::model::ServiceError> {
        use crate::core::model::ServiceError;
        let label = self.label;
        let failed = |message: String| ServiceError {
            code: None,
            message: format!("{label} {operation}: {message}"),
        };
        let creds = self.credentials.get().await.map_err(|e| {
            failed(crate::aws::credentials::explain(&e).unwrap_or_else(|| crate::aws::credentials::chain_text(&e)))
        })?;
        let post = Post {
            uri: &format!("{}/", self.endpoint),
            region: &self.region,
            service: self.signing_name,
            content_type: "application/x-amz-json-1.1",
            target: Some(target),
            body,
        };
        let request = signed_post(creds, &post).map_err(failed)?;
        let timeout = std::time::Duration::from_secs(30);
        let answer = tokio::time::timeout(timeout, exchange(&self.connector, request))
            .await
            .map_err(|_| failed(format!("no answer within {} s", timeout.as_secs())))?
            .map_err(failed)?;
        if !answer.ok() {
            let code = answer.code();
            return Err(ServiceError {
                message: format!("{label} {operation}: {code}: {}", answer.message()),
                code: Some(code),
            });
        }
        Ok(answer.json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, error_type: Option<&str>, body: &str) -> Answer {
        Answer {
            status,
            json: serde_json::from_str(body).unwrap_or(Value::Null),
            error_type: error_type.map(str::to_string),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn an_empty_code_is_no_code() {
        // Found by the aws_answer fuzz target: a header ":..." gave the code "", and an error
        // without a code in the service's words.
        let crash = Answer::read(400, Some(":\"ssDeu?{\"Mess\0"), b"{:\"ssDeueeniDoe".to_vec());
        assert_eq!(crash.code(), "Http400");
        let blank = Answer::read(
            500,
            None,
            br#"{"__type": "", "Code": " ", "code": "Throttling"}"#.to_vec(),
        );
        assert_eq!(blank.code(), "Throttling");
    }

    #[test]
    fn error_codes_come_from_the_header_then_the_body() {
        assert_eq!(
            answer(403, Some("AccessDeniedException"), "{}").code(),
            "AccessDeniedException"
        );
        let sqs = r#"{"__type": "com.amazonaws.sqs#QueueDoesNotExist", "message": "no queue"}"#;
        assert_eq!(answer(400, None, sqs).code(), "QueueDoesNotExist");
        assert_eq!(answer(400, None, sqs).message(), "no queue");
        assert_eq!(answer(502, None, "<html>bad gateway</html>").code(), "Http502");
        assert_eq!(
            answer(502, None, "<html>bad gateway</html>").message(),
            "<html>bad gateway</html>"
        );
        assert!(answer(200, None, "{}").ok());
    }
}
