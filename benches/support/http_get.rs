//! The benches' HTTP client call: one GET, its status and whole body.

use http_body_util::BodyExt;

pub type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Empty<hyper::body::Bytes>,
>;

pub async fn get(client: &Client, url: &str) -> Option<(u16, hyper::body::Bytes)> {
    let resp = client.get(url.parse().ok()?).await.ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, body))
}
