//! Why the AWS credentials could not be had, in words a user can act on.
//!
//! The SDK resolves credentials the way the AWS CLI does (environment, the shared config and
//! credentials files with `source_profile` + `role_arn`, SSO with `sso_session` or the legacy
//! `sso_start_url`, `credential_process`, web identity, ECS/EKS container credentials,
//! instance metadata). When that fails, its error says so in its own terms, wrapped in the
//! request's dispatch error and followed by the Debug form of every layer. [`explain`] finds
//! the credentials error in that chain and says what to do instead: log in to SSO again, what
//! a failing `credential_process` printed, or where it looked for credentials. Nothing it
//! prints names a cargo feature or an SDK type.

use std::error::Error;
use std::sync::RwLock;

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;

/// The profile the SDK was last configured with (`aws.profile`), for the advice's
/// `--profile`; `AWS_PROFILE` or `default` otherwise.
static PROFILE: RwLock<Option<String>> = RwLock::new(None);

/// Remembers `aws.profile` for the advice (`sdk::sdk_config` calls it).
pub fn configured_profile(profile: Option<&str>) {
    if let Ok(mut p) = PROFILE.write() {
        *p = profile.map(str::to_string);
    }
}

fn profile_name() -> String {
    PROFILE
        .read()
        .ok()
        .and_then(|p| p.clone())
        .or_else(|| std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()))
        .unwrap_or_else(|| "default".to_string())
}

/// What kind of credentials failure the SDK reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No source in the chain had credentials.
    NotLoaded,
    /// A source was configured but could not give credentials (expired SSO token, failed
    /// process, denied AssumeRole, bad profile).
    Provider,
}

/// The credentials error in `err`'s source chain, explained; `None` when `err` is not about
/// credentials.
pub fn explain(err: &(dyn Error + 'static)) -> Option<String> {
    let mut current: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            let failure = match c {
                CredentialsError::CredentialsNotLoaded(_) => Failure::NotLoaded,
                _ => Failure::Provider,
            };
            let profile = profile_name();
            // A profile named explicitly that no file defines: the SDK skips it and goes on
            // down the chain (to instance metadata), whose error then hides the real cause.
            // (`default` needs no section: credentials may come from anywhere in the chain.)
            if explicit_profile() && profile != "default" && !profile_defined(&profile) {
                return Some(advice(
                    failure,
                    &format!("profile `{profile}` was not defined"),
                    &profile,
                ));
            }
            return Some(advice(failure, &chain_text(c), &profile));
        }
        current = e.source();
    }
    None
}

/// Whether a profile was named (`aws.profile` or `AWS_PROFILE`) rather than defaulted.
fn explicit_profile() -> bool {
    PROFILE.read().ok().is_some_and(|p| p.is_some()) || std::env::var("AWS_PROFILE").is_ok_and(|p| !p.is_empty())
}

/// Whether the shared config or credentials file defines `profile` (`[profile NAME]` or
/// `[NAME]`); false when neither file can be read.
fn profile_defined(profile: &str) -> bool {
    let home = std::env::var("HOME").unwrap_or_default();
    let file = |var: &str, default: &str| {
        std::env::var(var)
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| format!("{home}/.aws/{default}"))
    };
    [
        file("AWS_CONFIG_FILE", "config"),
        file("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
    ]
    .iter()
    .filter_map(|p| std::fs::read_to_string(p).ok())
    .any(|t| defines(&t, profile))
}

/// Whether an INI text has the section of `profile`.
fn defines(text: &str, profile: &str) -> bool {
    text.lines().any(|l| {
        let section = l
            .trim()
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .map(str::trim);
        section.is_some_and(|s| s == profile || s.strip_prefix("profile").map(str::trim) == Some(profile))
    })
}

/// Why AssumeRole into a target account's role failed: the chain's own words (the service's
/// AccessDenied names the principal and the action), without the SDK's Debug forms.
pub fn assume_role_failed(err: &CredentialsError, role_arn: &str) -> String {
    format!("cannot assume {role_arn}: {}", chain_text(err))
}

/// The Display texts of an error and its sources, joined, each said once (layers often
/// repeat their source's text).
pub fn chain_text(err: &(dyn Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// The advice for a failure whose SDK text is `text` (pure, so it is unit-tested on the
/// texts the SDK gives).
pub fn advice(failure: Failure, text: &str, profile: &str) -> String {
    let lower = text.to_lowercase();
    let sso_expired = lower.contains("sso token has expired")
        || lower.contains("unauthorizedexception")
        || lower.contains("session token not found or invalid")
        || (lower.contains("sso") && lower.contains("cache") && lower.contains("failed to read"))
        // `aws configure sso` profiles (sso_session) that never logged in.
        || lower.contains("cached sso token");
    if sso_expired {
        return format!(
            "the AWS SSO session of profile {profile} has expired or was never started ({text}): run `aws sso login --profile {profile}`, then try again"
        );
    }
    if let Some(i) = text.find("external process exited with code") {
        let what = text[i..].trim_end_matches(|c: char| c == ')' || c.is_whitespace());
        return format!("the credential_process of profile {profile} failed: {what}");
    }
    if lower.contains(&format!("profile `{}` was not defined", profile.to_lowercase())) {
        return format!(
            "profile {profile} does not exist: it is in neither ~/.aws/config nor ~/.aws/credentials (or AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE); it is named by aws.profile or AWS_PROFILE, and `aws configure list-profiles` lists the ones there are"
        );
    }
    if failure == Failure::NotLoaded {
        return format!(
            "no AWS credentials found: looked in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), profile {profile} of the shared config and credentials files (~/.aws/config, ~/.aws/credentials), web identity (AWS_WEB_IDENTITY_TOKEN_FILE), ECS/EKS container credentials and the EC2 instance role; set AWS_PROFILE to a configured profile, or run `aws configure`"
        );
    }
    let feature = lower.contains("cargo feature");
    if feature {
        // Never shown as such: every credential source of the AWS CLI is built in, so this
        // means a source this build does not know at all.
        return format!("profile {profile} uses a credential source keywarden does not support");
    }
    format!("cannot load the AWS credentials of profile {profile}: {text}")
}

/// How long before their expiry cached credentials are renewed.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// Credentials resolved once and reused until [`RENEW_BEFORE`] their expiry, for requests
/// signed outside the SDK's clients (Security Hub): the SDK's clients cache in their identity
/// cache, but a provider called directly runs the whole chain again (a `credential_process`,
/// an SSO portal call, an AssumeRole) for every request.
#[derive(Debug)]
pub struct Cached {
    inner: SharedCredentialsProvider,
    held: tokio::sync::Mutex<Option<Credentials>>,
}

impl Cached {
    pub fn new(inner: SharedCredentialsProvider) -> Cached {
        Cached {
            inner,
            held: tokio::sync::Mutex::new(None),
        }
    }

    /// The cached credentials while fresh, else new ones from the provider.
    pub async fn get(&self) -> Result<Credentials, CredentialsError> {
        let mut held = self.held.lock().await;
        if let Some(c) = held.as_ref().filter(|c| fresh(c, SystemTime::now())) {
            return Ok(c.clone());
        }
        let c = self.inner.provide_credentials().await?;
        *held = Some(c.clone());
        Ok(c)
    }
}

fn fresh(c: &Credentials, now: SystemTime) -> bool {
    c.expiry().is_none_or(|e| e > now + RENEW_BEFORE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts its calls; its credentials expire `lifetime` after each call.
    #[derive(Debug)]
    struct Counting {
        calls: std::sync::Arc<std::sync::atomic::AtomicU32>,
        lifetime: Option<Duration>,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let expiry = self.lifetime.map(|l| SystemTime::now() + l);
            aws_credential_types::provider::future::ProvideCredentials::ready(Ok(Credentials::new(
                "AKIA", "secret", None, expiry, "test",
            )))
        }
    }

    #[tokio::test]
    async fn cached_credentials_are_resolved_once_until_they_near_their_expiry() {
        for (lifetime, calls) in [
            (None, 1),
            (Some(Duration::from_secs(3600)), 1),
            (Some(Duration::from_secs(60)), 3),
        ] {
            let counted = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
            let cached = Cached::new(SharedCredentialsProvider::new(Counting {
                calls: std::sync::Arc::clone(&counted),
                lifetime,
            }));
            for _ in 0..3 {
                cached.get().await.expect("credentials");
            }
            assert_eq!(counted.load(std::sync::atomic::Ordering::SeqCst), calls, "{lifetime:?}");
        }
    }

    #[test]
    fn an_expired_sso_token_says_to_log_in_again() {
        for text in [
            "the SSO token has expired and cannot be refreshed",
            "service error: UnauthorizedException: Session token not found or invalid",
            "failed to read `/home/u/.aws/sso/cache/3c2f.json`: No such file or directory",
            "failed to load the cached SSO token: failed to read `/root/.aws/sso/cache/5a1f.json`",
        ] {
            let a = advice(Failure::Provider, text, "corp-audit");
            assert!(a.contains("run `aws sso login --profile corp-audit`"), "{text} -> {a}");
        }
    }

    #[test]
    fn a_failing_credential_process_shows_its_exit_code_and_stderr() {
        let text = "an error occurred while loading credentials: Error retrieving credentials: external process exited with code exit status: 3. Stderr: vault is locked\n";
        let a = advice(Failure::Provider, text, "vault");
        assert_eq!(
            a,
            "the credential_process of profile vault failed: external process exited with code exit status: 3. Stderr: vault is locked"
        );
    }

    #[test]
    fn no_credentials_lists_where_it_looked_and_never_names_cargo() {
        let a = advice(
            Failure::NotLoaded,
            "no providers in chain provided credentials",
            "default",
        );
        assert!(a.starts_with("no AWS credentials found"), "{a}");
        assert!(a.contains("profile default"), "{a}");
        let b = advice(
            Failure::Provider,
            "This behavior requires following cargo feature(s) enabled: sso",
            "x",
        );
        assert!(!b.to_lowercase().contains("cargo"), "{b}");
    }

    #[test]
    fn a_profile_is_found_by_its_section() {
        let config = "[default]\nregion = x\n[profile corp-audit]\nsso_session = corp\n[ sso-session corp ]\n";
        assert!(defines(config, "corp-audit") && defines(config, "default"));
        assert!(!defines(config, "corp") && !defines(config, "nope"));
        assert!(
            defines("[ops]\naws_access_key_id = A\n", "ops"),
            "a credentials file's section"
        );
    }

    #[test]
    fn a_profile_that_does_not_exist_is_said_so() {
        let a = advice(Failure::Provider, "profile `nope` was not defined", "nope");
        assert!(a.starts_with("profile nope does not exist"), "{a}");
        assert!(a.contains("list-profiles"), "{a}");
    }

    #[test]
    fn other_failures_keep_the_sdks_text() {
        let a = advice(Failure::Provider, "the role session name is invalid", "ops");
        assert_eq!(
            a,
            "cannot load the AWS credentials of profile ops: the role session name is invalid"
        );
    }

    #[test]
    fn the_credentials_error_is_found_inside_a_wrapping_error() {
        #[derive(Debug)]
        struct Wrap(CredentialsError);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("dispatch failure")
            }
        }
        impl Error for Wrap {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Wrap(CredentialsError::not_loaded(
            "no providers in chain provided credentials",
        ));
        let a = explain(&e).expect("found");
        assert!(a.starts_with("no AWS credentials found"), "{a}");
        assert_eq!(explain(&std::io::Error::other("x")), None);
    }
}
