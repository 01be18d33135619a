//! An SDK error in the service's own words: `Code: message` when AWS answered, the answer's
//! own code and message when the SDK could not parse it (a `<Errors><Error>` body, a proxy's
//! HTML page), and a sentence naming the endpoint when nothing answered. Never the SDK's
//! Debug form. Also: a refused connection is not retried (`NoRetryOnRefusal`).

use std::error::Error;

use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{ClassifyRetry, RetryAction};
use aws_smithy_runtime_api::http::Response;

use crate::core::model::ServiceError;

/// `Code: message` for service errors (what an operator greps for), else what happened in
/// words. `endpoint` names where the request went, for errors where nothing answered.
pub fn describe_at<E>(e: &SdkError<E, Response>, endpoint: &str) -> ServiceError
where
    E: ProvideErrorMetadata + Error + 'static,
{
    if let (Some(code), message) = (e.code(), e.message()) {
        return ServiceError {
            code: Some(code.to_string()),
            message: message.map_or(code.to_string(), |m| format!("{code}: {m}")),
        };
    }
    // A request that never left because its credentials could not be had: say what to do.
    if let Some(advice) = crate::aws::credentials::explain(e) {
        return ServiceError::from(advice);
    }
    match e {
        SdkError::ServiceError(s) => unparsed(s.raw()),
        SdkError::ResponseError(r) => unparsed(r.raw()),
        SdkError::TimeoutError(_) => ServiceError::from(format!(
            "no answer from {endpoint} in time (aws.attempt_timeout, aws.operation_timeout)"
        )),
        SdkError::DispatchFailure(_) => {
            ServiceError::from(format!("could not connect to {endpoint}: {}", unreachable(e)))
        }
        _ => ServiceError::from(crate::aws::credentials::chain_text(e)),
    }
}

/// [`describe_at`] where the endpoint is the SDK client's default.
pub fn describe<E>(e: &SdkError<E, Response>) -> ServiceError
where
    E: ProvideErrorMetadata + Error + 'static,
{
    describe_at(e, "the endpoint")
}

/// Why a connection could not be made, from the innermost cause the chain has.
pub(crate) fn unreachable(e: &(dyn Error + 'static)) -> String {
    let mut current: Option<&(dyn Error + 'static)> = Some(e);
    let mut innermost = e.to_string();
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
                std::io::ErrorKind::TimedOut => "the connection timed out (aws.connect_timeout)".into(),
                _ => io.to_string(),
            };
        }
        let text = err.to_string();
        if !text.is_empty() {
            innermost = text;
        }
        current = err.source();
    }
    innermost
}

/// An answer the SDK could not read as an AWS error: its own `<Code>` and `<Message>` (XML) or
/// `__type` and `message` (JSON) when it has them, else its HTTP status and what it looks like.
fn unparsed(raw: &Response) -> ServiceError {
    let status = raw.status().as_u16();
    let body = String::from_utf8_lossy(raw.body().bytes().unwrap_or_default()).to_string();
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&format!("</{name}>"))? + start;
        Some(body[start..end].trim().to_string()).filter(|s| !s.is_empty())
    };
    let json: Option<serde_json::Value> = serde_json::from_str(&body).ok();
    let field = |k: &str| {
        json.as_ref()
            .and_then(|j| j[k].as_str())
            .map(|s| s.rsplit('#').next().unwrap_or(s).to_string())
    };
    let code = tag("Code").or_else(|| field("__type"));
    let message = tag("Message").or_else(|| field("message")).or_else(|| field("Message"));
    match (code, message) {
        (Some(c), Some(m)) => ServiceError {
            message: format!("{c}: {m}"),
            code: Some(c),
        },
        (Some(c), None) => ServiceError {
            message: c.clone(),
            code: Some(c),
        },
        _ if body.to_ascii_lowercase().contains("<html") => ServiceError::from(format!(
            "HTTP {status} with an HTML page, not an AWS answer (a proxy, or aws.endpoint_url pointing elsewhere?)"
        )),
        _ => {
            let excerpt: String = body.chars().take(200).collect();
            ServiceError::from(format!("HTTP {status}: {}", excerpt.trim()))
        }
    }
}

/// A refused connection is not retried: nothing listens there, and ten backed-off attempts
/// took over a minute to say so. (Timeouts and resets are still retried.)
#[derive(Debug)]
pub struct NoRetryOnRefusal;

impl ClassifyRetry for NoRetryOnRefusal {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(Err(err)) = ctx.output_or_error() else {
            return RetryAction::NoActionIndicated;
        };
        let Some(connector) = err.as_connector_error() else {
            return RetryAction::NoActionIndicated;
        };
        let mut current: Option<&(dyn Error + 'static)> = Some(connector);
        while let Some(e) = current {
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
            {
                return RetryAction::RetryForbidden;
            }
            current = e.source();
        }
        RetryAction::NoActionIndicated
    }

    fn name(&self) -> &'static str {
        "keywarden::NoRetryOnRefusal"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_types::body::SdkBody;

    fn answer(status: u16, body: &str) -> Response {
        Response::try_from(
            http::Response::builder()
                .status(status)
                .body(SdkBody::from(body.to_string()))
                .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn an_unparsed_answer_keeps_its_own_code_and_message() {
        let moto = "<Errors><Error><Code>AccessDenied</Code><Message>User: arn:aws:iam::1:user/k is not authorized to perform: iam:GetAccessKeyLastUsed</Message></Error></Errors>";
        let e = unparsed(&answer(403, moto));
        assert_eq!(e.code.as_deref(), Some("AccessDenied"));
        assert!(
            e.message.starts_with("AccessDenied: User: arn:aws:iam::1:user/k"),
            "{}",
            e.message
        );
        let json = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException","message":"no table"}"#;
        let e = unparsed(&answer(400, json));
        assert_eq!(e.message, "ResourceNotFoundException: no table");
        let e = unparsed(&answer(403, "<html><body>Forbidden by proxy</body></html>"));
        assert_eq!(e.code, None);
        assert!(e.message.contains("HTTP 403 with an HTML page"), "{}", e.message);
        let e = unparsed(&answer(502, "bad gateway"));
        assert_eq!(e.message, "HTTP 502: bad gateway");
    }

    #[test]
    fn a_refused_connection_says_so_in_words() {
        let refused = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        );
        assert_eq!(unreachable(&refused), "connection refused");
        let other = std::io::Error::other("no route to host");
        assert_eq!(unreachable(&other), "no route to host");
    }
}
