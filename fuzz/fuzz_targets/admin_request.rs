//! The admin listener, from the raw bytes of a connection: hyper parses the request heads,
//! keywarden authorizes and routes them. Listening with basic auth (user `prom`), whatever
//! arrives: never a panic, every answer starts with an HTTP/1.x status line, and no 2xx
//! unless the request carried `prom`'s right password in an `Authorization` header.
#![no_main]
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use keywarden::server::http::{serve_connection, Shared};
use keywarden::server::metrics::Metrics;
use keywarden::sys::web::{parse_basic, Web};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Listener {
    rt: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    web: Arc<Web>,
}

fn listener() -> &'static Listener {
    static L: OnceLock<Listener> = OnceLock::new();
    L.get_or_init(|| {
        // Cost 4, the least bcrypt allows: the property is who gets in, not how slowly.
        let hash = bcrypt::hash("secret", 4).expect("hash");
        let web = Arc::new(Web::new(None, BTreeMap::from([("prom".to_string(), hash)])));
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        Listener {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            shared: Arc::new(Shared::new(metrics, Arc::clone(&web))),
            web,
        }
    })
}

/// Whether some `Authorization` header line of the request gives `prom:secret`.
fn carries_the_password(request: &[u8]) -> bool {
    request.split(|b| *b == b'\n').any(|line| {
        let line = String::from_utf8_lossy(line);
        let Some((name, value)) = line.split_once(':') else {
            return false;
        };
        name.eq_ignore_ascii_case("authorization")
            && parse_basic(value.trim()).is_some_and(|(u, p)| u == "prom" && p == "secret")
    })
}

fuzz_target!(|data: &[u8]| {
    let l = listener();
    let answer = l.rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(256 * 1024);
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        let conn = tokio::spawn(serve_connection(
            hyper_util::rt::TokioIo::new(server),
            Arc::clone(&l.shared),
            Arc::clone(&l.web),
            stop,
        ));
        let _ = client.write_all(data).await;
        let _ = client.shutdown().await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), client.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the connection neither answered nor closed within 20 s");
        let _ = conn.await;
        answer
    });
    let text = String::from_utf8_lossy(&answer);
    // hyper answers in the request's version: HTTP/1.1, or HTTP/1.0 to a 1.0 request.
    let statuses: Vec<usize> = text.match_indices("HTTP/1.").map(|(i, _)| i).collect();
    if !answer.is_empty() {
        assert_eq!(statuses.first(), Some(&0), "an answer that is not HTTP/1.x: {text}");
    }
    for i in statuses {
        let line = text[i..].lines().next().unwrap_or("");
        let code = line.get(9..12).unwrap_or("");
        if !line.get(8..9).is_some_and(|sp| sp == " ") || !code.bytes().all(|b| b.is_ascii_digit()) {
            continue; // "HTTP/1." inside a body, not a status line
        }
        if code.starts_with('2') {
            assert!(carries_the_password(data), "{code} without the password: {text}");
        }
    }
});
