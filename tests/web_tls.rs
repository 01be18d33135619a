//! The protected listener through a real TLS client: HTTPS only, basic auth against bcrypt
//! hashes, settings swapped on SIGHUP, a bad certificate on reload keeping the running ones.
//! The certificate comes from the `openssl` command (installed by `.ci/run`).

use std::path::Path;
use std::sync::Arc;

use crate::common::*;
use http_body_util::BodyExt;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

fn make_cert(dir: &TempDir) -> (std::path::PathBuf, std::path::PathBuf) {
    self_signed(
        dir,
        "cert",
        "/CN=localhost",
        &[
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ],
    )
}

/// GET over TLS trusting only `ca`; `None` when no HTTP response came back.
async fn https_get(port: u16, ca: &Path, path: &str, auth: Option<(&str, &str)>) -> Option<(u16, String, String)> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .map_err(|e| eprintln!("tls: {e}"))
        .ok()?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| eprintln!("handshake: {e}"))
        .ok()?;
    tokio::spawn(conn);
    let mut req = hyper::Request::get(path).header("host", "127.0.0.1");
    if let Some((u, p)) = auth {
        let token = keywarden::sys::web::encode_basic(u, p);
        req = req.header("authorization", format!("Basic {token}"));
    }
    let resp = send
        .send_request(req.body(http_body_util::Empty::<hyper::body::Bytes>::new()).unwrap())
        .await
        .map_err(|e| eprintln!("request: {e}"))
        .ok()?;
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, challenge, String::from_utf8_lossy(&body).into_owned()))
}

fn config_text(dir: &TempDir, port: u16, dead: u16, web: &str) -> String {
    format!(
        "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"http://127.0.0.1:{dead}\"\nmax_attempts = 1\n\
         [schedule]\ncron = \"0 0 0 1 1 *\"\n[state]\npath = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n{web}",
        dir.0.join("state.json").display()
    )
}

async fn wait_for(secs: u64, what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn https_with_basic_auth_and_reloadable_settings() {
    let dir = TempDir::new("tls");
    let (cert, key) = make_cert(&dir);
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let (port, dead) = (free_port(), free_port());
    let tls = format!(
        "[metrics.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let protected = format!("{tls}[metrics.basic_auth_users]\nprometheus = \"{hash}\"\n");
    let config = dir.write("k.toml", &config_text(&dir, port, dead, &protected));

    let check = run(&mut keywarden(&["check-config", config.to_str().unwrap()]));
    let shown = String::from_utf8_lossy(&check.stdout);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(!shown.contains(&hash), "check-config never prints the hash: {shown}");

    let d = DaemonProcess::spawn(
        keywarden(&["run", "--config", config.to_str().unwrap()]),
        port,
        dir.0.join("log"),
    );
    let good = Some(("prometheus", "s3cret"));
    wait_for(30, "the HTTPS listener", async || {
        https_get(port, &cert, "/-/healthy", good)
            .await
            .is_some_and(|r| r.0 == 200)
    })
    .await;

    let (status, body) = {
        let r = https_get(port, &cert, "/metrics", good).await.expect("response");
        (r.0, r.2)
    };
    assert_eq!(status, 200);
    assert!(body.contains("keywarden_build_info"), "{body}");
    for (path, auth) in [
        ("/metrics", None),
        ("/-/healthy", None),
        ("/api/v1/report", Some(("prometheus", "wrong"))),
        ("/metrics", Some(("nobody", "s3cret"))),
    ] {
        let (status, challenge, _) = https_get(port, &cert, path, auth).await.expect("response");
        assert_eq!(status, 401, "{path} with {auth:?}");
        assert_eq!(challenge, "Basic realm=\"keywarden\"");
    }
    assert!(
        http_get(&format!("http://127.0.0.1:{port}/metrics")).await.is_none(),
        "plain HTTP gets no answer from the HTTPS listener"
    );

    // Reload without users: open to anyone who can reach it, still HTTPS.
    std::fs::write(&config, config_text(&dir, port, dead, &tls)).unwrap();
    d.signal(libc::SIGHUP);
    wait_for(30, "the reload without basic auth", async || {
        https_get(port, &cert, "/metrics", None)
            .await
            .is_some_and(|r| r.0 == 200)
    })
    .await;

    // A reload naming a missing key file is refused; the running settings stay.
    let broken = tls.replace(key.to_str().unwrap(), "/nonexistent/key.pem");
    std::fs::write(&config, config_text(&dir, port, dead, &broken)).unwrap();
    d.signal(libc::SIGHUP);
    wait_for(30, "the refused reload", async || {
        https_get(port, &cert, "/metrics", None)
            .await
            .and_then(|r| metric(&r.2, "keywarden_config_last_reload_successful", &[]))
            == Some(0.0)
    })
    .await;
    assert!(d.logs().contains("/nonexistent/key.pem"), "{}", d.logs());
}

#[test]
fn bad_web_settings_name_the_key_and_file() {
    let dir = TempDir::new("tls-bad");
    let config = dir.write(
        "k.toml",
        "[metrics.tls]\ncert_file = \"/nonexistent/cert.pem\"\nkey_file = \"/nonexistent/key.pem\"\n\n\
         [metrics.basic_auth_users]\nprometheus = \"plaintext\"\n",
    );
    let out = run(&mut keywarden(&["check-config", config.to_str().unwrap()]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("k.toml:1: key `metrics.tls`") && err.contains("/nonexistent/cert.pem"),
        "{err}"
    );
    assert!(
        err.contains("k.toml:6: key `metrics.basic_auth_users.prometheus`") && err.contains("not a bcrypt hash"),
        "{err}"
    );
}
