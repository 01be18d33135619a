//! Logging: journald (structured fields such as USER, ACCESS_KEY_ID, RULE, ACCOUNT_ID) when
//! its socket exists and the daemon runs, otherwise stderr as text or JSON. `RUST_LOG`, when
//! set, wins over `log.level`.

use std::path::Path;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// `log.level = "info"` means keywarden at info, dependencies at warn and the SDK's config
/// loading at error, so the SDK's own chatter stays out; a full filter (`"info,aws_config=debug"`) is taken as written.
fn filter(level: &str) -> EnvFilter {
    if let Ok(f) = EnvFilter::try_from_default_env() {
        return f;
    }
    let directive = if level.contains('=') || level.contains(',') {
        level.to_string()
    } else {
        // The SDK's credential chain warns about each source it tried, in its own type names;
        // keywarden explains the failure itself (`aws::credentials`).
        format!("warn,aws_config=error,keywarden={level}")
    };
    EnvFilter::try_new(directive).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// How log lines look on stderr (`log.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Initializes the global subscriber once; later calls do nothing. `level` is `log.level`.
pub fn init(level: &str, format: LogFormat, journal: bool) {
    let filter = filter(level);
    if journal && Path::new(JOURNAL_SOCKET).exists() {
        match tracing_journald::layer() {
            Ok(layer) => {
                let _ = tracing_subscriber::registry()
                    .with(filter)
                    // No prefix: the fields are USER, ACCESS_KEY_ID, ... as documented, not
                    // tracing-journald's default F_USER, F_ACCESS_KEY_ID.
                    .with(layer.with_syslog_identifier("keywarden".into()).with_field_prefix(None))
                    .try_init();
                return;
            }
            Err(e) => eprintln!("keywarden: journald unavailable ({e}); logging to stderr"),
        }
    }
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
