//! The command line, as clap defines it: the binary parses it, and the man page and shell
//! completions in `packaging/` are generated from it (tests/generated_docs.rs keeps them current).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::core::model::Timestamp;
use crate::sys::timefmt;

const LONG_ABOUT: &str = "\
keywarden audits AWS IAM access keys against the rules of CIS AWS Foundations 1.12-1.14 and \
Security Hub IAM.3, IAM.8 and IAM.22: one active key per user, no key older than 90 days, no active key \
unused for 45 days. As a daemon (keywarden run, the systemd unit keywarden.service) it audits \
on a cron schedule, deactivates offending keys after a grace period (never deletes them; \
dry-run unless enforcement.mode = \"enforce\"; exemptions always win; never its own key; at \
most enforcement.max_deactivations_per_run per run) and serves Prometheus metrics.";

const AFTER_LONG_HELP: &str = "\
Exit codes: 0 ok (audit: no violation), 1 runtime error, 2 usage or configuration error, \
3 violations found (audit), 4 refused (reactivate: nothing changed).

Files: /etc/keywarden/keywarden.toml (the config; the config path is --config, else \
$KEYWARDEN_CONFIG, else this file), /etc/keywarden/env (AWS_* variables for the unit, mode \
0600), /var/lib/keywarden/state.json (first-seen times and backoffs).

Environment: KEYWARDEN_<SECTION>__<KEY> overrides a config key (e.g. \
KEYWARDEN_ENFORCEMENT__MODE=enforce); the standard AWS variables (AWS_PROFILE, AWS_REGION, \
AWS_ENDPOINT_URL, ...) work as the AWS CLI's do; RUST_LOG overrides log.level.

Signals (run): SIGHUP reloads the config (an invalid one is refused and the running one kept); \
SIGTERM and SIGINT stop cleanly (enforcement stops between two keys).

Logs go to the journal when its socket exists (fields ACCOUNT_ID, USER, ACCESS_KEY_ID, RULE, \
OUTCOME, ...: journalctl -u keywarden ACCESS_KEY_ID=AKIA...), else to stderr. Metrics, health \
and the JSON report are served on metrics.listen (/metrics, /-/healthy, /-/ready, \
/api/v1/report). See /usr/share/doc/keywarden/README.md.";

const RUN_HELP: &str = "\
Exit codes: 0 stopped cleanly (with --once: every read and action succeeded), 1 runtime error \
(with --once: a read or an action failed), 2 usage or configuration error.

Examples:
  keywarden run --once --config /etc/keywarden/keywarden.toml
  systemctl reload keywarden      # SIGHUP: reload the config; an invalid one is refused";

const AUDIT_HELP: &str = "\
Exit codes: 0 no violation, 3 violations found, 1 runtime error or an incomplete audit (the \
first line of the output says what could not be read and what to do), 2 usage or \
configuration error.

Examples:
  keywarden audit
  keywarden audit --format json | jq '.findings[] | select(.action == \"deactivate\")'
  keywarden audit --at 2027-03-01T00:00:00Z     # what will violate by then?";

const HISTORY_HELP: &str = "\
Exit codes: 0 (a journal that does not exist is said on stderr: is --config the daemon's?), 1 \
the journal cannot be read, 2 usage.

Examples:
  keywarden history --since 7d
  keywarden history --user 'svc-*' --format json";

const USAGE_HELP: &str = "\
Exit codes: 0, 1 a read failed (the keys it could read are shown; a backfill stopped early \
resumes where it stopped), 2 usage.

Examples:
  keywarden usage
  keywarden usage alice --backfill
  keywarden usage AKIAIOSFODNN7EXAMPLE --format json
  keywarden usage alice --policy";

const REACTIVATE_HELP: &str = "\
Exit codes: 0 reactivated and snoozed, 1 error (the message says what was already done), 2 \
usage (including a snooze of 0s: the next run would deactivate the key again), 4 refused \
(nothing changed: keywarden never deactivated the key, or it is already Active).

Examples:
  keywarden reactivate AKIAIOSFODNN7EXAMPLE --reason \"INC-42 payments down\"
  keywarden reactivate AKIAIOSFODNN7EXAMPLE --reason \"INC-42\" --snooze 3d";

const ROTATE_HELP: &str = "\
Exit codes: 0 new key made and stored, 1 error (a failed hand-over deletes the new key again), \
2 usage, 4 refused (nothing changed: two keys already, no active key, keywarden's own user).

Examples:
  keywarden rotate app-deployer --reason \"CIS 1.14, CHG-7\"
  keywarden rotate app-deployer --reason \"CHG-7\" --account 111122223333";

const CHECK_ACCESS_HELP: &str = "\
Exit codes: 0 every action allowed, 3 some missing (each named), 1 could not tell for some \
(the first line says why), 2 usage or configuration error.

Examples:
  keywarden check-access
  keywarden check-access --format json | jq '.missing'";

const CHECK_CONFIG_HELP: &str = "\
Exit codes: 0 valid (warnings, such as an expired exemption, go to stderr), 2 invalid (each \
problem with its file, line and key).

Examples:
  keywarden check-config /etc/keywarden/keywarden.toml
  KEYWARDEN_ENFORCEMENT__MODE=enforce keywarden check-config";

/// `keywarden --version`: the version and the commit it was built from (build.rs).
pub const LONG_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("BUILT_FROM_COMMIT"), ")");

/// The commit keywarden was built from (build.rs): a short id, `-dirty` for uncommitted
/// changes, or `unknown`.
pub const COMMIT: &str = env!("BUILT_FROM_COMMIT");

#[derive(Parser)]
#[command(
    name = "keywarden",
    version,
    long_version = LONG_VERSION,
    about = "Keeps AWS IAM access keys in line with CIS 1.12-1.14",
    long_about = LONG_ABOUT,
    after_long_help = AFTER_LONG_HELP
)]
pub struct Cli {
    /// Config file (default: $KEYWARDEN_CONFIG, else /etc/keywarden/keywarden.toml).
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// The daemon: audits on the cron schedule, serves metrics, reloads on SIGHUP.
    #[command(after_long_help = RUN_HELP)]
    Run {
        /// One audit cycle, then exit (0 if complete, 1 if any read failed).
        #[arg(long)]
        once: bool,
    },
    /// One read-only audit: never writes state, never changes a key.
    #[command(after_long_help = AUDIT_HELP)]
    Audit {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Evaluate ages and deadlines as of this RFC 3339 instant instead of now.
        #[arg(long, value_name = "RFC3339", value_parser = parse_at)]
        at: Option<Timestamp>,
    },
    /// The action journal: what keywarden did (and would have done in dry-run), newest first.
    #[command(after_long_help = HISTORY_HELP)]
    History {
        /// Only actions at most this old, e.g. 24h, 7d.
        #[arg(long, value_name = "DURATION", value_parser = parse_since)]
        since: Option<chrono::TimeDelta>,
        /// Only users matching this glob, e.g. "ci-*".
        #[arg(long, value_name = "GLOB", value_parser = parse_glob)]
        user: Option<glob::Pattern>,
        #[arg(long, value_enum, default_value_t = HistoryFormat::Table)]
        format: HistoryFormat,
    },
    /// Undo a deactivation keywarden made: set the key Active again and snooze it, so that the
    /// daemon does not deactivate it again before the snooze ends (exit 4: refused, nothing
    /// changed).
    #[command(after_long_help = REACTIVATE_HELP)]
    Reactivate {
        /// The access key to reactivate (found in the action journal), the id of an SSH key,
        /// service-specific credential or signing certificate keywarden set Inactive, or with
        /// --password a user name.
        #[arg(value_name = "ID")]
        access_key_id: String,
        /// Why (kept in the action journal with who ran the command).
        #[arg(long, value_name = "TEXT", value_parser = parse_reason)]
        reason: String,
        /// How long the daemon leaves the key alone (default: enforcement.grace_period).
        #[arg(long, value_name = "DURATION", value_parser = parse_since)]
        snooze: Option<chrono::TimeDelta>,
        /// Reactivate even if the journal's last entry is not a deactivation by keywarden, or
        /// snooze a key that is already Active.
        #[arg(long)]
        force: bool,
        /// ID is a user whose console password keywarden deleted: give it a new login profile
        /// with a temporary password, handed over in Secrets Manager
        /// (rotation.secret_prefix + ACCOUNT/USER/password) and to be changed at first sign-in.
        #[arg(long)]
        password: bool,
    },
    /// Rotate USER's access key: make a new key, store it in Secrets Manager (JSON AccessKeyId,
    /// SecretAccessKey) and journal it; the old key is deactivated by multiple_active_keys once
    /// the new one is used (exit 4: refused, nothing changed).
    #[command(after_long_help = ROTATE_HELP)]
    Rotate {
        /// The IAM user whose active key is rotated.
        #[arg(value_name = "USER")]
        user: String,
        /// Why (kept in the action journal with who ran the command).
        #[arg(long, value_name = "TEXT", value_parser = parse_reason)]
        reason: String,
        /// The user's account (default: the one account the config reads).
        #[arg(long, value_name = "ID")]
        account: Option<String>,
        /// The secret to store the new key in (default: rotation.secret_prefix + ACCOUNT/USER).
        #[arg(long, value_name = "NAME")]
        secret_id: Option<String>,
    },
    /// What uses each active access key (from where, calling what), what kind of workload that
    /// is, and what should replace the key; --policy prints a least-privilege policy of the
    /// actions seen.
    #[command(after_long_help = USAGE_HELP)]
    Usage {
        /// Only this user's keys, or only this access key.
        #[arg(value_name = "USER|ACCESS_KEY_ID")]
        target: Option<String>,
        #[arg(long, value_enum, default_value_t = HistoryFormat::Table)]
        format: HistoryFormat,
        /// Print an IAM policy allowing the actions the selected keys were seen calling.
        #[arg(long)]
        policy: bool,
        /// Read CloudTrail's LookupEvents first (last 90 days, 2 requests per second) for every
        /// selected key whose backfill is not finished.
        #[arg(long)]
        backfill: bool,
    },
    /// Set up the DynamoDB state table (state.backend = "dynamodb"), or move a file state into it.
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Every AWS action the config needs, per account, and whether these credentials may call
    /// it (IAM's policy simulator; exit 3 names each missing action, 1 when it cannot tell).
    #[command(after_long_help = CHECK_ACCESS_HELP)]
    CheckAccess {
        #[arg(long, value_enum, default_value_t = AccessFormat::Table)]
        format: AccessFormat,
    },
    /// Parse and validate the config, print the effective config.
    #[command(after_long_help = CHECK_CONFIG_HELP)]
    CheckConfig {
        /// Config file (default: --config, else $KEYWARDEN_CONFIG, else
        /// /etc/keywarden/keywarden.toml).
        path: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum StateCommand {
    /// Create the table of [state.dynamodb] (on-demand billing, TTL on `ttl`); an existing one is checked.
    Init,
    /// Copy a state file and its journal into an empty table (before the daemons use it).
    Import {
        /// The state file (state.json); its journal is state.journal_path, else actions.jsonl beside it.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum HistoryFormat {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum AccessFormat {
    Table,
    Json,
}

fn parse_since(s: &str) -> Result<chrono::TimeDelta, String> {
    timefmt::parse_delta(s).ok_or_else(|| format!("{s:?} is not a duration (e.g. 24h, 7d)"))
}

fn parse_reason(s: &str) -> Result<String, String> {
    match s.trim() {
        "" => Err("must say why (e.g. a ticket)".into()),
        r => Ok(r.to_string()),
    }
}

fn parse_glob(s: &str) -> Result<glob::Pattern, String> {
    glob::Pattern::new(s).map_err(|e| format!("{s:?} is not a glob: {e}"))
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
    /// OCSF 1.3.0 Detection Findings (class 2004), one JSON array.
    Ocsf,
    /// One row per finding, every JSON field (RFC 4180).
    Csv,
}

fn parse_at(s: &str) -> Result<Timestamp, String> {
    timefmt::parse(s).map_err(|e| format!("{s:?} is not an RFC 3339 date-time (e.g. 2027-03-01T00:00:00Z): {e}"))
}
