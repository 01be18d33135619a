//! Test harness: a moto IAM server on a free loopback port (tests/moto/launcher.py), an IAM
//! client to seed it through the real API, and a runner for the real `keywarden` binary.
//!
//! moto comes from the virtualenv that `scripts/test-deps` creates (`.venv/`), or from the
//! Python named by `KEYWARDEN_TEST_PYTHON`. Without it these tests fail; they never skip.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use aws_sdk_iam::config::{BehaviorVersion, Credentials, Region};

pub const ACCOUNT: &str = "123456789012";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("KEYWARDEN_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = repo().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "moto is not installed: run scripts/test-deps first (looked for {})",
        venv.display()
    );
    venv
}

pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Moto {
        let mut child = Command::new(python())
            .arg(repo().join("tests/moto/launcher.py"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the moto launcher");
        let stdout = child.stdout.take().expect("launcher stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read launcher port");
        let port = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("moto launcher did not print its port: {line:?}"));
        Moto { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A minimal HTTP/1.1 exchange with the launcher's control endpoints.
    fn control(&self, method: &str, path: &str, body: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("write to moto");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read from moto");
        assert!(
            resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200"),
            "{resp}"
        );
        resp.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    }

    /// A JSON-protocol call to moto (unsigned: moto routes by the credential scope's service
    /// and does not check the signature); the answer's status line and JSON body.
    pub fn json_call(
        &self,
        service: &str,
        target: &str,
        content_type: &str,
        body: &serde_json::Value,
    ) -> (String, serde_json::Value) {
        let body = body.to_string();
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        write!(
            s,
            "POST / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nX-Amz-Target: {target}\r\nContent-Type: {content_type}\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=AKIATESTSEED/20261204/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=x\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .expect("write");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read");
        let (head, text) = resp.split_once("\r\n\r\n").unwrap_or((resp.as_str(), ""));
        let status = head.lines().next().unwrap_or_default().to_string();
        (status, serde_json::from_str(text).unwrap_or(serde_json::Value::Null))
    }

    /// moto's IAM clock becomes real time plus `days` (negative: the past).
    pub fn set_clock_days(&self, days: f64) {
        self.control(
            "POST",
            "/_keywarden/clock",
            &format!("{{\"offset_seconds\": {}}}", days * 86_400.0),
        );
    }

    /// Requests per action since the last reset; resets.
    pub fn take_stats(&self) -> serde_json::Value {
        serde_json::from_str(&self.control("POST", "/_keywarden/stats", "")).expect("stats json")
    }

    /// Requests per access key id that signed them, then per action (never reset).
    pub fn callers(&self) -> serde_json::Value {
        serde_json::from_str(&self.control("GET", "/_keywarden/callers", "")).expect("callers json")
    }

    /// The most requests moto had in flight at once since the last call; resets.
    pub fn take_max_in_flight(&self) -> u64 {
        let v: serde_json::Value =
            serde_json::from_str(&self.control("POST", "/_keywarden/in_flight", "")).expect("in-flight json");
        v["max"].as_u64().expect("max")
    }

    /// `{"ListAccessKeys": ["bob"]}`: those requests fail with AccessDenied.
    /// The fake SSO portal's valid bearer tokens: `{"TOKEN": "AKID"}` (tests/moto/launcher.py).
    pub fn set_sso_tokens(&self, json: &str) {
        self.control("POST", "/_keywarden/sso", json);
    }

    /// Stores CloudTrail records for the launcher's LookupEvents (tests/moto/cloudtrail.py).
    pub fn store_cloudtrail(&self, records: &[serde_json::Value]) {
        let body = serde_json::json!({ "records": records }).to_string();
        self.control("POST", "/_keywarden/cloudtrail", &body);
    }

    pub fn set_faults(&self, json: &str) {
        self.control("POST", "/_keywarden/faults", json);
    }

    pub fn iam(&self) -> aws_sdk_iam::Client {
        self.iam_as("testing", "testing")
    }

    pub fn iam_as(&self, key_id: &str, secret: &str) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.sdk(Credentials::new(key_id, secret, None, None, "test")))
    }

    /// An SDK config for this moto with `creds`.
    pub fn sdk(&self, creds: Credentials) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .credentials_provider(aws_sdk_iam::config::SharedCredentialsProvider::new(creds))
            .http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https(),
            )
            .build()
    }

    /// An IAM client acting in `account` (moto maps credentials from AssumeRole to the role's
    /// account), for seeding accounts other than the default one.
    pub async fn iam_in(&self, account: &str) -> aws_sdk_iam::Client {
        let sts = aws_sdk_sts::Client::new(&self.sdk(Credentials::new("testing", "testing", None, None, "test")));
        let c = sts
            .assume_role()
            .role_arn(format!("arn:aws:iam::{account}:role/seed"))
            .role_session_name("seed")
            .send()
            .await
            .expect("AssumeRole for seeding")
            .credentials
            .expect("credentials");
        aws_sdk_iam::Client::new(&self.sdk(Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            Some(c.session_token),
            None,
            "seed",
        )))
    }

    pub fn organizations(&self) -> aws_sdk_organizations::Client {
        aws_sdk_organizations::Client::new(&self.sdk(Credentials::new("testing", "testing", None, None, "test")))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every key of every listed user in `iam`'s account: id -> status, straight from moto.
pub async fn key_statuses<S: AsRef<str>>(
    iam: &aws_sdk_iam::Client,
    users: &[S],
) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    for u in users {
        let keys = iam
            .list_access_keys()
            .user_name(u.as_ref())
            .send()
            .await
            .expect("ListAccessKeys");
        for k in keys.access_key_metadata {
            out.insert(
                k.access_key_id.unwrap_or_default(),
                k.status.map(|s| s.as_str().to_string()).unwrap_or_default(),
            );
        }
    }
    out
}

pub struct SeededKey {
    pub id: String,
    pub secret: String,
    /// CreateDate as moto reports it, unix seconds.
    pub created: i64,
}

pub async fn create_user(iam: &aws_sdk_iam::Client, name: &str, path: Option<&str>) {
    iam.create_user()
        .user_name(name)
        .set_path(path.map(str::to_string))
        .send()
        .await
        .expect("CreateUser");
}

pub async fn create_key(iam: &aws_sdk_iam::Client, user: &str) -> SeededKey {
    let k = iam
        .create_access_key()
        .user_name(user)
        .send()
        .await
        .expect("CreateAccessKey")
        .access_key
        .expect("access key");
    SeededKey {
        id: k.access_key_id,
        secret: k.secret_access_key,
        created: k.create_date.map(|d| d.secs()).expect("create date"),
    }
}

pub async fn delete_key(iam: &aws_sdk_iam::Client, user: &str, access_key_id: &str) {
    iam.delete_access_key()
        .user_name(user)
        .access_key_id(access_key_id)
        .send()
        .await
        .expect("DeleteAccessKey");
}

pub async fn tag_user(iam: &aws_sdk_iam::Client, user: &str, key: &str, value: &str) {
    let tag = aws_sdk_iam::types::Tag::builder()
        .key(key)
        .value(value)
        .build()
        .expect("tag");
    iam.tag_user().user_name(user).tags(tag).send().await.expect("TagUser");
}

/// Any signed request made with a key sets its last-used date in moto.
pub async fn use_key(moto: &Moto, key: &SeededKey) {
    moto.iam_as(&key.id, &key.secret)
        .list_users()
        .max_items(1)
        .send()
        .await
        .expect("use key");
}

pub async fn deactivate(iam: &aws_sdk_iam::Client, user: &str, key: &SeededKey) {
    iam.update_access_key()
        .user_name(user)
        .access_key_id(&key.id)
        .status(aws_sdk_iam::types::StatusType::Inactive)
        .send()
        .await
        .expect("UpdateAccessKey");
}

/// Users whose one key was created 60 days ago and never used (`unused_key` is due).
pub async fn idle_users(moto: &Moto, names: &[&str]) -> Vec<SeededKey> {
    let iam = moto.iam();
    for u in names {
        create_user(&iam, u, None).await;
    }
    moto.set_clock_days(-60.0);
    let mut keys = Vec::new();
    for u in names {
        keys.push(create_key(&iam, u).await);
    }
    moto.set_clock_days(0.0);
    keys
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!(
            "keywarden-test-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&d).expect("temp dir");
        TempDir(d)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The real binary with a clean AWS environment: static test credentials, no profile files,
/// no instance metadata.
pub fn keywarden(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keywarden"));
    c.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.starts_with("KEYWARDEN_") {
            c.env_remove(k);
        }
    }
    c.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_CONFIG_FILE", "/nonexistent/keywarden-test")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/keywarden-test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("RUST_LOG");
    c
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run keywarden")
}

/// A config for moto with a state file under `dir`, plus `extra` TOML appended.
/// Runs a command of the binary: (exit code, stdout, stderr).
pub fn outputs(cmd: &mut Command) -> (i32, String, String) {
    let out = run(cmd);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

pub fn moto_config(dir: &TempDir, moto: &Moto, extra: &str) -> PathBuf {
    moto_config_aws(dir, moto, "", extra)
}

/// The same, with `aws_keys` (lines such as `max_concurrent_accounts = 2\n`) in `[aws]`.
pub fn moto_config_aws(dir: &TempDir, moto: &Moto, aws_keys: &str, extra: &str) -> PathBuf {
    let state = dir.0.join("state.json");
    dir.write(
        "keywarden.toml",
        &format!(
            "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\nmax_attempts = 2\n{aws_keys}\n[state]\npath = \"{}\"\n\n{extra}",
            moto.endpoint(),
            state.display()
        ),
    )
}

pub fn audit_json(config: &Path, extra_args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut args = vec![
        "audit",
        "--config",
        config.to_str().expect("utf-8 path"),
        "--format",
        "json",
    ];
    args.extend_from_slice(extra_args);
    let out = run(&mut keywarden(&args));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {stderr}"));
    (out.status.code().unwrap_or(-1), json, stderr)
}

/// A port that was free a moment ago (bind to 0, read, close).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// GET with a real HTTP client (hyper); `None` when the connection fails.
/// `None` when nothing answers within 10 s (a stopped process accepts and never answers).
pub async fn http_get(url: &str) -> Option<(u16, String)> {
    use http_body_util::BodyExt;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<hyper::body::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let get = async {
        let resp = client.get(url.parse().expect("url")).await.ok()?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some((status, String::from_utf8_lossy(&body).to_string()))
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), get)
        .await
        .ok()
        .flatten()
}

/// The value of one series in Prometheus text: `name{labels...} value`, matching every given
/// label (others may be present).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (label_part, value) = if let Some(r) = rest.strip_prefix('{') {
            let (l, v) = r.split_once('}')?;
            (l, v)
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            return None;
        };
        let ok = labels
            .iter()
            .all(|(k, v)| label_part.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
        ok.then(|| value.trim().parse().ok()).flatten()
    })
}

/// `keywarden run` as a child process; killed on drop if still running.
pub struct DaemonProcess {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl DaemonProcess {
    pub fn spawn(mut cmd: Command, port: u16, log: PathBuf) -> DaemonProcess {
        let file = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn keywarden run");
        DaemonProcess { child, port, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&self.url(path)).await
    }

    /// Polls until `cond` holds on the /metrics page, or panics after `secs`.
    pub async fn wait_metrics(&self, secs: u64, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            if let Some((200, body)) = self.get("/metrics").await {
                if cond(&body) {
                    return body;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// The /metrics page once the first complete audit is published.
    pub async fn first_audit(&self) -> String {
        self.wait_metrics(30, "the first audit", |m| {
            metric(m, "keywarden_audit_success", &[]) == Some(1.0)
        })
        .await
    }

    /// Waits for exit; returns the exit code and how long it took.
    pub fn wait_exit(&mut self, secs: u64) -> (Option<i32>, std::time::Duration) {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return (status.code(), start.elapsed());
            }
            assert!(
                start.elapsed().as_secs() < secs,
                "did not exit within {secs} s; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `keywarden history --format json`: the journal, newest first.
pub fn history_json(config: &Path) -> Vec<serde_json::Value> {
    let (code, out, err) = outputs(&mut keywarden(&[
        "history",
        "--config",
        config.to_str().expect("utf-8 path"),
        "--format",
        "json",
    ]));
    assert_eq!(code, 0, "history: {err}");
    serde_json::from_str::<serde_json::Value>(&out)
        .expect("history json")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `keywarden run --once` with info logs: its exit code and stderr.
pub fn run_once(config: &Path) -> (i32, String) {
    let (code, _, err) = outputs(
        keywarden(&["run", "--once", "--config", config.to_str().expect("utf-8 path")]).env("RUST_LOG", "info"),
    );
    (code, err)
}

/// How many requests of `action` moto's stats counted.
pub fn counted(stats: &serde_json::Value, action: &str) -> u64 {
    stats[action].as_u64().unwrap_or(0)
}

/// A self-signed certificate and its key from the `openssl` command (installed by `.ci/run`),
/// valid for 2 days, with `extra` arguments (e.g. `-addext` lines); returns both paths.
pub fn self_signed(dir: &TempDir, name: &str, subject: &str, extra: &[&str]) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.0.join(format!("{name}.pem")), dir.0.join(format!("{name}.key")));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-days", "2", "-subj", subject])
        .args(extra)
        .output()
        .expect("the openssl command is needed for this test (apt-get install openssl)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

/// Console access for `user` (a login profile; moto dates it by the user's creation).
pub async fn create_login_profile(iam: &aws_sdk_iam::Client, user: &str) {
    iam.create_login_profile()
        .user_name(user)
        .password("Correct-Horse-9!")
        .send()
        .await
        .expect("CreateLoginProfile");
}

/// An SSH public key for `user`, dated by moto's clock; its `APKA...` id.
pub async fn upload_ssh_key(iam: &aws_sdk_iam::Client, user: &str) -> String {
    iam.upload_ssh_public_key()
        .user_name(user)
        .ssh_public_key_body(format!(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeywardenTestKeyOnly {user}"
        ))
        .send()
        .await
        .expect("UploadSSHPublicKey")
        .ssh_public_key
        .expect("the key")
        .ssh_public_key_id
}

/// A service-specific credential of `user` for `service` (the launcher's), expiring after
/// `age_days` when given; as created.
pub async fn create_service_credential(
    iam: &aws_sdk_iam::Client,
    user: &str,
    service: &str,
    age_days: Option<i32>,
) -> aws_sdk_iam::types::ServiceSpecificCredential {
    iam.create_service_specific_credential()
        .user_name(user)
        .service_name(service)
        .set_credential_age_days(age_days)
        .send()
        .await
        .expect("CreateServiceSpecificCredential")
        .service_specific_credential
        .expect("the credential")
}

/// A signing certificate of `user` (a fresh self-signed one in `dir`); its `CertificateId`.
pub async fn upload_signing_certificate(iam: &aws_sdk_iam::Client, dir: &TempDir, user: &str) -> String {
    let (cert, _) = self_signed(dir, &format!("signing-{user}"), "/CN=signing", &[]);
    iam.upload_signing_certificate()
        .user_name(user)
        .certificate_body(std::fs::read_to_string(cert).expect("the certificate"))
        .send()
        .await
        .expect("UploadSigningCertificate")
        .certificate
        .expect("the certificate")
        .certificate_id
}
