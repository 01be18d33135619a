//! The benches' HTTP side: one GET (status and whole body), waiting for a daemon's readiness,
//! and timing a series of `/metrics` scrapes.

use std::time::{Duration, Instant};

use http_body_util::BodyExt;

pub type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Empty<hyper::body::Bytes>,
>;

pub fn client() -> Client {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

/// A loopback port free at the time of asking (for the daemon's listener).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn get(client: &Client, url: &str) -> Option<(u16, hyper::body::Bytes)> {
    let resp = client.get(url.parse().ok()?).await.ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, body))
}

/// Polls `{base}/-/ready` every 50 ms until it answers 200; panics after `limit`.
pub async fn wait_ready(client: &Client, base: &str, started: Instant, limit: Duration) {
    loop {
        if let Some((200, _)) = get(client, &format!("{base}/-/ready")).await {
            return;
        }
        assert!(started.elapsed() < limit, "daemon not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `n` scrapes of `url`, each asserted 200: their latencies, sorted, and the last page.
pub async fn scrapes(client: &Client, url: &str, n: usize) -> (Vec<Duration>, hyper::body::Bytes) {
    let mut lat = Vec::with_capacity(n);
    let mut page = hyper::body::Bytes::new();
    for _ in 0..n {
        let t = Instant::now();
        let (status, body) = get(client, url).await.expect("scrape");
        lat.push(t.elapsed());
        assert_eq!(status, 200);
        page = body;
    }
    lat.sort();
    (lat, page)
}
