//! The admin HTTP listener (hyper 1, HTTP/1.1).
//!
//! Endpoints:
//! - `GET /`               landing page linking the others
//! - `GET /metrics`        Prometheus text format, from the last completed audit
//! - `GET /-/healthy`      200 while the loop makes progress; 503 once a run has been going
//!   for longer than `schedule.max_run_duration` (a stuck run: the systemd watchdog then
//!   stops being fed too, so systemd restarts the service)
//! - `GET /-/ready`        200 once an audit has completed that read at least one account;
//!   503 before, and while the last audit could read nothing (the body says why)
//! - `GET /api/v1/report`  the last report, the same JSON as `audit --format json`
//!   (503 before the first audit)
//! - `GET /api/v1/actions` the action journal as `history --format json` prints it
//!   (`?since=24h`; 400 for a bad duration)
//! - `GET /api/v1/usage`   what uses each active access key, the same JSON as `keywarden usage
//!   --format json`, as of the last audit (503 before the first audit)
//!
//! Anything else is 404; other methods on these paths are 405 (with `Allow: GET, HEAD`).
//! Header reads (and TLS handshakes) time out, header size is bounded, and at most
//! [`MAX_CONNECTIONS`] connections are open at once (a new one closes the oldest), so slow,
//! idle or malformed clients cannot pile up. With `[metrics.basic_auth_users]` every endpoint answers 401 without valid credentials;
//! with `[metrics.tls]` the listener speaks only HTTPS (see `web.rs`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use http_body_util::StreamBody;
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::server::metrics::Metrics;
use crate::sys::web::Web;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections the listener keeps open at once. A new one beyond it closes the oldest, so
/// that idle or slow clients can neither make `/-/healthy` unreachable nor take the file
/// descriptors the AWS calls need (`LimitNOFILE=` in the systemd unit counts on this bound).
pub const MAX_CONNECTIONS: usize = 32;

/// The open connections, oldest first: each one's id and the sender that closes it.
#[derive(Default)]
struct Open {
    next_id: u64,
    queue: std::collections::VecDeque<(u64, tokio::sync::oneshot::Sender<()>)>,
}

impl Open {
    /// Admits a connection: its id and the receiver that says "close now", closing the
    /// oldest when the listener is full.
    fn admit(&mut self) -> (u64, tokio::sync::oneshot::Receiver<()>) {
        while self.queue.len() >= MAX_CONNECTIONS {
            if let Some((_, close)) = self.queue.pop_front() {
                let _ = close.send(());
            }
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.next_id += 1;
        self.queue.push_back((self.next_id, tx));
        (self.next_id, rx)
    }

    fn remove(&mut self, id: u64) {
        self.queue.retain(|(i, _)| *i != id);
    }
}

/// Ready once an audit has completed that could read at least one account (successfully or
/// not: the report then says what failed). Not ready before the first audit, and not ready
/// while the last audit could read nothing at all (no credentials, an endpoint that refuses):
/// a daemon that knows nothing must not look like one that found nothing.
#[derive(Debug, Default)]
pub struct Readiness(Mutex<Option<Result<(), String>>>);

impl Readiness {
    pub fn set_ready(&self) {
        if let Ok(mut r) = self.0.lock() {
            *r = Some(Ok(()));
        }
    }

    /// The last audit read nothing, for `why`.
    pub fn set_read_nothing(&self, why: String) {
        if let Ok(mut r) = self.0.lock() {
            *r = Some(Err(why));
        }
    }

    pub fn is_ready(&self) -> bool {
        self.why_not().is_none()
    }

    /// Why not ready, for the 503's body; `None` when ready.
    pub fn why_not(&self) -> Option<String> {
        match self.0.lock().map(|r| r.clone()) {
            Ok(Some(Ok(()))) => None,
            Ok(Some(Err(why))) => Some(format!("the last audit could read nothing: {why}")),
            Ok(None) => Some("no audit has completed yet".into()),
            Err(_) => Some("readiness unknown".into()),
        }
    }
}

/// Whether the daemon's loop makes progress: unhealthy while a run has been going for longer
/// than the bound. Instants are passed in, so the rule is tested without waiting.
#[derive(Debug)]
pub struct Liveness {
    run_started: Mutex<Option<Instant>>,
    max_run: Mutex<Duration>,
}

impl Liveness {
    pub fn new(max_run: Duration) -> Liveness {
        Liveness {
            run_started: Mutex::new(None),
            max_run: Mutex::new(max_run),
        }
    }

    pub fn set_max_run(&self, d: Duration) {
        *self.max_run.lock().unwrap_or_else(|p| p.into_inner()) = d;
    }

    pub fn run_started(&self, at: Instant) {
        *self.run_started.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
    }

    pub fn run_finished(&self) {
        *self.run_started.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// `Err(how long the run has been going)` when it is past the bound.
    pub fn check(&self, now: Instant) -> Result<(), Duration> {
        let started = *self.run_started.lock().unwrap_or_else(|p| p.into_inner());
        let max = *self.max_run.lock().unwrap_or_else(|p| p.into_inner());
        match started.map(|s| now.saturating_duration_since(s)) {
            Some(running) if running > max => Err(running),
            _ => Ok(()),
        }
    }
}

/// The journal of the configured backend (a file, or the state table).
pub type SharedJournal = Arc<dyn crate::ports::ActionJournal + Send>;

/// What the endpoints serve; updated by the daemon after each audit.
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub ready: Readiness,
    pub liveness: Liveness,
    /// The last report, already serialized.
    pub report_json: RwLock<Option<Bytes>>,
    /// The usage of each active key as of the last audit, already serialized.
    pub usage_json: RwLock<Option<Bytes>>,
    /// TLS and basic auth; read at each new connection, replaced on reload.
    web: RwLock<Arc<Web>>,
    /// The action journal `/api/v1/actions` reads (replaced on reload).
    journal: RwLock<Option<SharedJournal>>,
}

impl Shared {
    pub fn new(metrics: Arc<Metrics>, web: Arc<Web>) -> Shared {
        Shared {
            metrics,
            ready: Readiness::default(),
            liveness: Liveness::new(Duration::MAX),
            report_json: RwLock::new(None),
            usage_json: RwLock::new(None),
            web: RwLock::new(web),
            journal: RwLock::new(None),
        }
    }

    pub fn set_journal(&self, journal: SharedJournal) {
        match self.journal.write() {
            Ok(mut p) => *p = Some(journal),
            Err(poisoned) => *poisoned.into_inner() = Some(journal),
        }
    }

    fn journal(&self) -> Option<SharedJournal> {
        match self.journal.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn web(&self) -> Arc<Web> {
        match self.web.read() {
            Ok(w) => Arc::clone(&w),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn set_web(&self, web: Arc<Web>) {
        match self.web.write() {
            Ok(mut w) => *w = web,
            Err(poisoned) => *poisoned.into_inner() = web,
        }
    }
}

const LANDING: &str = "<!doctype html><html><head><title>keywarden</title></head><body>\
<h1>keywarden</h1><p>IAM access key compliance (CIS 1.12-1.14)</p><ul>\
<li><a href=\"/metrics\">/metrics</a></li><li><a href=\"/-/healthy\">/-/healthy</a></li>\
<li><a href=\"/-/ready\">/-/ready</a></li><li><a href=\"/api/v1/report\">/api/v1/report</a></li><li><a href=\"/api/v1/usage\">/api/v1/usage</a></li>\
</ul></body></html>\n";

/// Every response is a list of chunks, so the large `/metrics` page and report are served
/// from shared buffers without a copy per scrape.
pub type Body = StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

fn body(chunks: Vec<Bytes>) -> Body {
    let frames: Vec<_> = chunks.into_iter().map(|b| Ok(Frame::data(b))).collect();
    StreamBody::new(futures_util::stream::iter(frames))
}

fn respond(status: StatusCode, content_type: &str, chunks: impl Into<Chunks>) -> Response<Body> {
    let chunks = chunks.into().0;
    let len: usize = chunks.iter().map(|c| c.len()).sum();
    let mut r = Response::new(body(chunks));
    // A known length lets hyper skip chunked encoding and clients preallocate.
    r.headers_mut()
        .insert(hyper::header::CONTENT_LENGTH, hyper::header::HeaderValue::from(len));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

pub struct Chunks(Vec<Bytes>);

impl From<&'static str> for Chunks {
    fn from(s: &'static str) -> Chunks {
        Chunks(vec![Bytes::from_static(s.as_bytes())])
    }
}

impl From<Vec<Bytes>> for Chunks {
    fn from(v: Vec<Bytes>) -> Chunks {
        Chunks(v)
    }
}

impl From<Bytes> for Chunks {
    fn from(b: Bytes) -> Chunks {
        Chunks(vec![b])
    }
}

pub async fn route(shared: &Shared, method: &Method, path: &str, query: Option<&str>) -> Response<Body> {
    const TEXT: &str = "text/plain; charset=utf-8";
    let known = matches!(
        path,
        "/" | "/metrics" | "/-/healthy" | "/-/ready" | "/api/v1/report" | "/api/v1/actions" | "/api/v1/usage"
    );
    if !known {
        return respond(StatusCode::NOT_FOUND, TEXT, "not found\n");
    }
    if method != Method::GET && method != Method::HEAD {
        let mut r = respond(StatusCode::METHOD_NOT_ALLOWED, TEXT, "method not allowed\n");
        // RFC 9110 15.5.6: a 405 names the methods the resource allows.
        r.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("GET, HEAD"),
        );
        return r;
    }
    match path {
        "/" => respond(StatusCode::OK, "text/html; charset=utf-8", LANDING),
        "/metrics" => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            shared.metrics.render(),
        ),
        "/-/healthy" => match shared.liveness.check(Instant::now()) {
            Ok(()) => respond(StatusCode::OK, TEXT, "keywarden is healthy\n"),
            Err(running) => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                Bytes::from(format!(
                    "the current run has been going for {} s, longer than schedule.max_run_duration\n",
                    running.as_secs()
                )),
            ),
        },
        "/-/ready" => match shared.ready.why_not() {
            None => respond(StatusCode::OK, TEXT, "keywarden is ready\n"),
            Some(why) => respond(StatusCode::SERVICE_UNAVAILABLE, TEXT, Bytes::from(format!("{why}\n"))),
        },
        "/api/v1/actions" => actions(shared, query).await,
        "/api/v1/usage" => match shared.usage_json.read().ok().and_then(|r| r.clone()) {
            Some(json) => respond(StatusCode::OK, "application/json", json),
            None => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "application/json",
                "{\"error\": \"no audit has completed yet\"}\n",
            ),
        },
        _ => match shared.report_json.read().ok().and_then(|r| r.clone()) {
            Some(json) => respond(StatusCode::OK, "application/json", json),
            None => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "application/json",
                "{\"error\": \"no audit has completed yet\"}\n",
            ),
        },
    }
}

/// `GET /api/v1/actions[?since=DURATION]`: the action journal as `history --format json` prints
/// it. Read at each request (it is small, and appended by the runs).
async fn actions(shared: &Shared, query: Option<&str>) -> Response<Body> {
    const JSON: &str = "application/json";
    let since = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("since="));
    let since = match since.map(crate::sys::timefmt::parse_delta) {
        Some(None) => {
            return respond(
                StatusCode::BAD_REQUEST,
                JSON,
                "{\"error\": \"since must be a duration such as 24h or 7d\"}\n",
            )
        }
        Some(Some(d)) => Some(d),
        None => None,
    };
    let Some(journal) = shared.journal() else {
        return respond(StatusCode::OK, JSON, "[]\n");
    };
    match journal.read().await {
        Ok(read) => {
            let q = crate::core::journal::Query { since, user: None };
            let selected = crate::core::journal::select(&read.entries, &q, chrono::Utc::now());
            respond(
                StatusCode::OK,
                JSON,
                Bytes::from(crate::output::history::to_json(&selected)),
            )
        }
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            JSON,
            Bytes::from(serde_json::json!({ "error": e.to_string() }).to_string()),
        ),
    }
}

/// A bound listener; `serve` runs until `shutdown` turns true.
pub struct Server {
    listener: TcpListener,
}

impl Server {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Server> {
        Ok(Server {
            listener: TcpListener::bind(addr).await?,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn serve(self, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
        let open = Arc::new(Mutex::new(Open::default()));
        loop {
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            let stream = match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let shared = Arc::clone(&shared);
            let stop = shutdown.clone();
            let Ok((id, close)) = open.lock().map(|mut o| o.admit()) else {
                continue;
            };
            let open = Arc::clone(&open);
            tokio::spawn(async move {
                let web = shared.web();
                let connection = async {
                    match &web.tls {
                        None => serve_connection(TokioIo::new(stream), shared, Arc::clone(&web), stop).await,
                        Some(acceptor) => {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => {
                                    serve_connection(TokioIo::new(tls), shared, Arc::clone(&web), stop).await
                                }
                                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                                Err(_) => tracing::debug!("TLS handshake timed out"),
                            }
                        }
                    }
                };
                tokio::select! {
                    _ = connection => {}
                    _ = close => tracing::debug!(limit = MAX_CONNECTIONS, "connection closed for a newer one"),
                }
                if let Ok(mut o) = open.lock() {
                    o.remove(id);
                }
            });
        }
    }
}

/// One connection, from its first byte to its close: authorization, then [`route`]. Public so
/// that the `admin_request` fuzz target can feed it raw request heads through a pipe.
pub async fn serve_connection<IO>(io: IO, shared: Arc<Shared>, web: Arc<Web>, mut stop: watch::Receiver<bool>)
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (shared, web) = (Arc::clone(&shared), Arc::clone(&web));
        async move {
            let auth = req
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if !web.authorized(auth).await {
                let mut r = respond(StatusCode::UNAUTHORIZED, "text/plain; charset=utf-8", "unauthorized\n");
                r.headers_mut().insert(
                    hyper::header::WWW_AUTHENTICATE,
                    hyper::header::HeaderValue::from_static("Basic realm=\"keywarden\""),
                );
                return Ok::<_, Infallible>(r);
            }
            Ok(route(&shared, req.method(), req.uri().path(), req.uri().query()).await)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(64 * 1024)
        .serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "http connection ended with an error");
            }
        }
        _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_turns_on_once() {
        let r = Readiness::default();
        assert!(!r.is_ready());
        r.set_ready();
        assert!(r.is_ready());
        r.set_read_nothing("GetCallerIdentity: could not connect".into());
        assert!(!r.is_ready(), "an audit that read nothing");
        assert!(r.why_not().is_some_and(|w| w.contains("could not connect")));
        r.set_ready();
        assert!(r.is_ready(), "ready again once an account is read");
    }

    #[test]
    fn a_run_past_its_bound_is_not_live() {
        let l = Liveness::new(Duration::from_secs(60));
        let t = Instant::now();
        assert_eq!(l.check(t), Ok(()), "no run");
        l.run_started(t);
        assert_eq!(l.check(t + Duration::from_secs(60)), Ok(()), "at the bound");
        assert_eq!(l.check(t + Duration::from_secs(61)), Err(Duration::from_secs(61)));
        l.set_max_run(Duration::from_secs(120));
        assert_eq!(l.check(t + Duration::from_secs(61)), Ok(()), "a reload moves the bound");
        l.run_finished();
        assert_eq!(l.check(t + Duration::from_secs(600)), Ok(()));
    }

    #[tokio::test]
    async fn routes() {
        let shared = Shared::new(Arc::new(Metrics::new().unwrap()), Arc::new(Web::open()));
        let get = |p: &'static str| {
            let shared = &shared;
            async move { route(shared, &Method::GET, p, None).await.status() }
        };
        assert_eq!(get("/").await, StatusCode::OK);
        assert_eq!(get("/metrics").await, StatusCode::OK);
        assert_eq!(get("/-/healthy").await, StatusCode::OK);
        assert_eq!(get("/-/ready").await, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(get("/api/v1/report").await, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(get("/nope").await, StatusCode::NOT_FOUND);
        let post = route(&shared, &Method::POST, "/metrics", None).await;
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        // RFC 9110 15.5.6: a 405 says which methods the resource allows.
        let allow = post.headers().get(hyper::header::ALLOW).and_then(|v| v.to_str().ok());
        assert_eq!(allow, Some("GET, HEAD"));
        shared.ready.set_ready();
        *shared.report_json.write().unwrap() = Some(Bytes::from_static(b"{}"));
        assert_eq!(get("/-/ready").await, StatusCode::OK);
        assert_eq!(get("/api/v1/report").await, StatusCode::OK);
    }
}
