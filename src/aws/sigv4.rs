//! A POST signed with SigV4 (`aws-sigv4`), for the services keywarden calls without their SDK
//! crate (Security Hub, SQS): the request is built here and sent by the SDK's own connector.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::http::Request as SmithyRequest;
use aws_smithy_types::body::SdkBody;

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
