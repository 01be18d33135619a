//! Protecting the admin listener the way Prometheus exporters do (exporter-toolkit's web
//! config): optional TLS (rustls with ring) and HTTP basic auth against bcrypt hashes.
//!
//! `[metrics.tls]` (`cert_file`, `key_file`: PEM) turns the listener into HTTPS only;
//! `[metrics.basic_auth_users]` (`name = "bcrypt hash"`) makes every endpoint answer 401
//! without valid credentials. Both are read at config load, so a bad file fails `check-config`
//! and a SIGHUP with one keeps the running settings; a good SIGHUP takes effect for new
//! connections (certificate rotation without a restart).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Successful credentials remembered so that a scrape every 15 s does not cost a bcrypt
/// verification (tens of milliseconds of CPU) each time. Bounded; cleared when full.
const CACHE_MAX: usize = 256;

pub struct Web {
    pub tls: Option<TlsAcceptor>,
    users: BTreeMap<String, String>,
    verified: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Web")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Web {
    /// Plain HTTP, no authentication (what a config without `[metrics.tls]` and users gives).
    #[cfg(test)]
    pub fn open() -> Web {
        Web::new(None, BTreeMap::new())
    }

    /// `users`: name -> bcrypt hash, already checked with [`check_hash`].
    pub fn new(tls: Option<TlsAcceptor>, users: BTreeMap<String, String>) -> Web {
        Web {
            tls,
            users,
            verified: Mutex::new(HashSet::new()),
        }
    }

    fn requires_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// Whether an `Authorization` header value grants access. Always true without users.
    pub async fn authorized(&self, header: Option<&str>) -> bool {
        if !self.requires_auth() {
            return true;
        }
        let Some(header) = header else { return false };
        if self.verified.lock().is_ok_and(|v| v.contains(header)) {
            return true;
        }
        let Some((user, password)) = parse_basic(header) else {
            return false;
        };
        // An unknown user is checked against some real hash anyway, so response time does
        // not tell which user names exist.
        let (hash, known) = match self.users.get(&user) {
            Some(h) => (h.clone(), true),
            None => match self.users.values().next() {
                Some(h) => (h.clone(), false),
                None => return false,
            },
        };
        // bcrypt is deliberately slow: keep it off the async workers.
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false)
            && known;
        if ok {
            if let Ok(mut v) = self.verified.lock() {
                if v.len() >= CACHE_MAX {
                    v.clear();
                }
                v.insert(header.to_string());
            }
        }
        ok
    }
}

/// `Basic base64(user:password)` -> (user, password).
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The credentials part of a `Basic` header for `user` and `password` (what a client sends).
pub fn encode_basic(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// A bcrypt hash as `htpasswd -nBC 10 user` or Python's `bcrypt.hashpw` print it.
pub fn check_hash(hash: &str) -> Result<(), String> {
    let ok_prefix = ["$2a$", "$2b$", "$2x$", "$2y$"].iter().any(|p| hash.starts_with(p));
    if !ok_prefix || hash.parse::<bcrypt::HashParts>().is_err() {
        return Err("is not a bcrypt hash (\"$2y$10$...\", e.g. from `htpasswd -nBC 10 USER`)".into());
    }
    Ok(())
}

/// Reads the PEM certificate chain and private key; the error names the file and the reason.
pub fn tls_acceptor(cert_file: &Path, key_file: &Path) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| format!("cannot read {}: {e}", cert_file.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("{}: no usable PEM private key: {e}", key_file.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "{} and {} do not make a TLS identity: {e}",
                cert_file.display(),
                key_file.display()
            )
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", encode_basic(user, password))
    }

    #[test]
    fn basic_credentials_are_parsed_strictly() {
        assert_eq!(parse_basic(&basic("prom", "a:b")), Some(("prom".into(), "a:b".into())));
        assert_eq!(parse_basic(&basic("prom", "x")).map(|c| c.0), Some("prom".into()));
        assert_eq!(parse_basic("basic cHJvbTp4").map(|c| c.1), Some("x".into()));
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
        assert_eq!(parse_basic("Basic bm9jb2xvbg=="), None, "no colon");
    }

    #[test]
    fn hashes_are_checked() {
        let h = bcrypt::hash("secret", 4).unwrap();
        assert!(check_hash(&h).is_ok());
        assert!(check_hash(&h.replacen("$2b$", "$2y$", 1)).is_ok());
        assert!(check_hash("secret").is_err());
        assert!(check_hash("$2y$10$short").is_err());
    }

    #[tokio::test]
    async fn only_the_right_password_of_a_known_user_passes() {
        let users = BTreeMap::from([("prom".to_string(), bcrypt::hash("secret", 4).unwrap())]);
        let web = Web::new(None, users);
        assert!(web.authorized(Some(&basic("prom", "secret"))).await);
        assert!(web.authorized(Some(&basic("prom", "secret"))).await, "cached");
        assert!(!web.authorized(Some(&basic("prom", "wrong"))).await);
        assert!(!web.authorized(Some(&basic("other", "secret"))).await);
        assert!(!web.authorized(None).await);
        assert!(Web::open().authorized(None).await);
    }
}
