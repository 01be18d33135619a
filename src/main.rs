//! The binary edge: parses the command line, maps errors to the exit codes docs/names.md lists.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use keywarden::app::{audit, daemon};
use keywarden::cli::{Cli, Command, Format, HistoryFormat};
use keywarden::config;
use keywarden::ports::ActionJournal;
use keywarden::state::Store;
use keywarden::sys::logging;

/// Exit codes (docs/names.md, "Exit codes"; `keywarden help` lists them too).
const EXIT_RUNTIME: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_REFUSED: u8 = 4;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { path } => check_config(path),
        Command::CheckAccess { config, format } => match load_config(config.as_deref()) {
            Ok(cfg) => {
                logging::init(&cfg.log_level, cfg.log_format, false);
                check_access(&cfg, format)
            }
            Err(code) => code,
        },
        Command::State { command } => state_command(command),
        Command::Run { config, once } => run_daemon(config, once),
        Command::Reactivate {
            access_key_id,
            reason,
            snooze,
            force,
            config,
        } => match load_config(config.as_deref()) {
            Ok(cfg) => {
                logging::init(&cfg.log_level, cfg.log_format, false);
                reactivate(&cfg, &access_key_id, &reason, snooze, force)
            }
            Err(code) => code,
        },
        Command::Rotate {
            user,
            reason,
            account,
            secret_id,
            config,
        } => match load_config(config.as_deref()) {
            Ok(cfg) => {
                logging::init(&cfg.log_level, cfg.log_format, false);
                rotate(&cfg, &user, &reason, account.as_deref(), secret_id.as_deref())
            }
            Err(code) => code,
        },
        Command::History {
            config,
            since,
            user,
            format,
        } => match load_config(config.as_deref()) {
            Ok(cfg) => history(&cfg, since, user, format),
            Err(code) => code,
        },
        Command::Audit { config, format, at } => match load_config(config.as_deref()) {
            Ok(cfg) => {
                logging::init(&cfg.log_level, cfg.log_format, false);
                match run_audit(&cfg, format, at) {
                    Ok(code) => ExitCode::from(code),
                    Err(e) => {
                        eprintln!("keywarden: {e:#}");
                        ExitCode::from(EXIT_RUNTIME)
                    }
                }
            }
            Err(code) => code,
        },
    }
}

/// Writes a command's output to stdout. A reader that went away (`| head`) has what it
/// wanted: the rest is dropped quietly and the command's own exit code stands; any other
/// failure (`> /dev/full`) is said and is exit 1, never a panic.
fn emit(text: &str) -> Result<(), ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => {
            eprintln!("keywarden: cannot write the output to stdout: {e}");
            Err(ExitCode::from(EXIT_RUNTIME))
        }
    }
}

fn new_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}

/// The runtime, or the exit code after saying why there is none.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    new_runtime().map_err(|e| {
        eprintln!("keywarden: cannot start the async runtime: {e}");
        ExitCode::from(EXIT_RUNTIME)
    })
}

fn load_config(cli_path: Option<&std::path::Path>) -> Result<config::Config, ExitCode> {
    load_config_at(cli_path).map(|(cfg, _, _)| cfg)
}

/// The config, with where it came from and whether that file had to exist (for reloads).
fn load_config_at(cli_path: Option<&std::path::Path>) -> Result<(config::Config, PathBuf, bool), ExitCode> {
    let (path, required) = config::resolve_path(cli_path);
    match config::load(&path, required) {
        Ok(cfg) => Ok((cfg, path, required)),
        Err(e) => {
            eprintln!("keywarden: invalid configuration:\n{e}");
            Err(ExitCode::from(EXIT_USAGE))
        }
    }
}

fn check_config(path: Option<PathBuf>) -> ExitCode {
    let cfg = match load_config(path.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for w in cfg.warnings(chrono::Utc::now(), None) {
        eprintln!("keywarden: warning: {w}");
    }
    let heading = match &cfg.source {
        Some(p) => format!("# {}: configuration is valid\n", p.display()),
        None => "# no config file; defaults and environment are valid\n".to_string(),
    };
    let text = format!(
        "{heading}# effective configuration (file < KEYWARDEN_* environment < defaults filled in):\n{}",
        cfg.effective_toml()
    );
    match emit(&text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

fn check_access(cfg: &config::Config, format: HistoryFormat) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let report = rt.block_on(keywarden::app::check_access::check_access(cfg));
    let text = match format {
        HistoryFormat::Json => format!("{}\n", keywarden::output::access::to_json(&report)),
        HistoryFormat::Table => keywarden::output::access::to_table(&report),
    };
    if let Err(code) = emit(&text) {
        return code;
    }
    for m in report.missing() {
        eprintln!("keywarden: missing permission: {m}");
    }
    ExitCode::from(report.exit_code() as u8)
}

fn run_audit(
    cfg: &config::Config,
    format: Format,
    at: Option<keywarden::core::model::Timestamp>,
) -> anyhow::Result<u8> {
    let rt = new_runtime().context("cannot start the async runtime")?;
    let now = at.unwrap_or_else(chrono::Utc::now);
    let run = rt.block_on(async {
        let fleet = keywarden::aws::accounts::Fleet::connect(&cfg.aws, None).await;
        let store = Store::open(cfg, std::time::Duration::ZERO, None).await;
        audit::audit(cfg, &fleet, &store, now).await
    })?;
    for w in cfg.warnings(now, Some(&run.accounts)) {
        eprintln!("keywarden: warning: {w}");
    }
    let report = run.report;
    let text = match format {
        Format::Json => format!("{}\n", report.to_json()),
        Format::Table => report.to_table(),
        Format::Csv => report.to_csv(),
        Format::Ocsf => format!("{}\n", report.to_ocsf()),
    };
    if emit(&text).is_err() {
        return Ok(EXIT_RUNTIME);
    }
    if let Some(headline) = report.failure_headline() {
        eprintln!("keywarden: {headline}");
    }
    Ok(report.exit_code() as u8)
}

fn run_daemon(cli_path: Option<PathBuf>, once: bool) -> ExitCode {
    let (cfg, path, required) = match load_config_at(cli_path.as_deref()) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    logging::init(&cfg.log_level, cfg.log_format, true);
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let opts = daemon::Options {
        config_path: path,
        config_required: required,
        once,
    };
    match rt.block_on(daemon::run(cfg, opts)) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            tracing::error!(error = %e, "keywarden stopped");
            eprintln!("keywarden: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn state_command(cmd: keywarden::cli::StateCommand) -> ExitCode {
    use keywarden::app::state_admin::{self, AdminError};
    use keywarden::cli::StateCommand;
    let config = match &cmd {
        StateCommand::Init { config } | StateCommand::Import { config, .. } => config.clone(),
    };
    let cfg = match load_config(config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    logging::init(&cfg.log_level, cfg.log_format, false);
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = rt.block_on(async {
        match &cmd {
            StateCommand::Init { .. } => state_admin::init(&cfg).await,
            StateCommand::Import { file, .. } => state_admin::import(&cfg, file).await.map(|i| {
                format!(
                    "imported {} finding(s), {} failure(s), {} snooze(s) from {} and {} journal entries from {}",
                    i.findings,
                    i.failures,
                    i.snoozes,
                    file.display(),
                    i.journal_entries,
                    i.journal_path.display()
                )
            }),
        }
    });
    match result {
        Ok(said) => match emit(&format!("{said}\n")) {
            Ok(()) => ExitCode::SUCCESS,
            Err(code) => code,
        },
        Err(e @ AdminError::NotATable) => {
            eprintln!("keywarden: {e}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => {
            eprintln!("keywarden: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn history(
    cfg: &config::Config,
    since: Option<chrono::TimeDelta>,
    user: Option<glob::Pattern>,
    format: HistoryFormat,
) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let (read, missing) = rt.block_on(async {
        let store = Store::open(cfg, std::time::Duration::ZERO, None).await;
        (store.read().await, store.missing_journal())
    });
    if let Some(path) = missing {
        eprintln!("keywarden: {}", no_journal(cfg, &path));
    }
    let read = match read {
        Ok(r) => r,
        Err(e) => {
            eprintln!("keywarden: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    for skipped in &read.skipped {
        eprintln!("keywarden: warning: {skipped}");
    }
    let query = keywarden::core::journal::Query { since, user };
    let selected = keywarden::core::journal::select(&read.entries, &query, chrono::Utc::now());
    let text = match format {
        HistoryFormat::Json => format!("{}\n", keywarden::output::history::to_json(&selected)),
        HistoryFormat::Table => keywarden::output::history::to_table(&selected),
    };
    match emit(&text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

/// What a missing journal file means, naming the config that pointed at it.
fn no_journal(cfg: &config::Config, path: &std::path::Path) -> String {
    let config = cfg
        .source
        .as_ref()
        .map_or("no config file".to_string(), |p| p.display().to_string());
    format!(
        "there is no action journal at {} ({config}): keywarden has not acted with this configuration; is --config the one the daemon runs with?",
        path.display()
    )
}

fn reactivate(
    cfg: &config::Config,
    access_key_id: &str,
    reason: &str,
    snooze: Option<chrono::TimeDelta>,
    force: bool,
) -> ExitCode {
    use keywarden::app::reactivate::{self, ReactivateError, Request};
    let snooze = snooze.unwrap_or(cfg.policy.grace_period);
    if snooze <= chrono::TimeDelta::zero() {
        eprintln!(
            "keywarden: a snooze of 0s (--snooze, else enforcement.grace_period) would let the next run deactivate {access_key_id} again at once; give --snooze, e.g. --snooze 7d"
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let run = keywarden::sys::host::run_info();
    let operator = keywarden::sys::host::operator();
    let req = Request {
        access_key_id,
        reason,
        snooze,
        force,
        operator: &operator,
        now: chrono::Utc::now(),
        run: &run,
    };
    let result = rt.block_on(async {
        // A file store is locked by the daemon for the length of a run; wait for it a while.
        let store = Store::open(cfg, std::time::Duration::from_secs(60), None).await;
        if let Some(path) = store.missing_journal() {
            return Err(ReactivateError::Refused(format!(
                "{access_key_id} is not in the action journal: {}",
                no_journal(cfg, &path)
            )));
        }
        let fleet = keywarden::aws::accounts::Fleet::connect(&cfg.aws, None).await;
        reactivate::reactivate(&req, &fleet, &store, &store).await
    });
    match result {
        Ok(done) => {
            let what = if done.changed {
                "reactivated;"
            } else {
                "already Active;"
            };
            let said = format!(
                "{access_key_id} of {} (account {}) {what} snoozed until {}\n",
                done.user,
                done.account_id,
                keywarden::sys::timefmt::format(&done.until)
            );
            emit(&said).err().unwrap_or(ExitCode::SUCCESS)
        }
        Err(e @ ReactivateError::Refused(_)) => {
            eprintln!("keywarden: {e}");
            ExitCode::from(EXIT_REFUSED)
        }
        Err(e) => {
            eprintln!("keywarden: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// `keywarden rotate`: acts whatever `enforcement.mode` says (an operator's explicit command,
/// as `reactivate` is).
fn rotate(cfg: &config::Config, user: &str, reason: &str, account: Option<&str>, secret_id: Option<&str>) -> ExitCode {
    use keywarden::app::rotate::{self, Request, RotateError};
    keywarden::sys::host::no_core_dumps();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let run = keywarden::sys::host::run_info();
    let operator = keywarden::sys::host::operator();
    let result = rt.block_on(async {
        let store = Store::open(cfg, std::time::Duration::from_secs(60), None).await;
        let fleet = keywarden::aws::accounts::Fleet::connect(&cfg.aws, None).await;
        let account_id = rotation_account(&fleet, account)?;
        let req = Request {
            account_id: &account_id,
            user,
            reason,
            secret_id,
            secret_prefix: &cfg.rotation.secret_prefix,
            operator: &operator,
            mode: keywarden::core::policy::Mode::Enforce,
            own_access_key_id: fleet.own_access_key_id(&account_id),
            now: chrono::Utc::now(),
            run: &run,
        };
        let rotator = keywarden::aws::accounts::FleetRotator {
            fleet: &fleet,
            settings: &cfg.rotation,
        };
        let done = rotate::rotate(&req, &fleet, &rotator, &store).await;
        Ok((account_id, done))
    });
    match result {
        Err((code, message)) => {
            eprintln!("keywarden: {message}");
            ExitCode::from(code)
        }
        Ok((account_id, Ok(done))) => {
            let said = format!(
                "{user} (account {account_id}): new access key {} stored in secret {} ({}); the old key {} stays active until the new one is used, then multiple_active_keys deactivates it after the grace period\n",
                done.new_access_key_id.as_deref().unwrap_or("-"),
                done.secret_name,
                done.secret_arn.as_deref().unwrap_or("-"),
                done.old_access_key_id
            );
            emit(&said).err().unwrap_or(ExitCode::SUCCESS)
        }
        Ok((_, Err(e @ RotateError::Refused(_)))) => {
            eprintln!("keywarden: {e}");
            ExitCode::from(EXIT_REFUSED)
        }
        Ok((_, Err(e))) => {
            eprintln!("keywarden: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// The account `rotate` acts in: `--account`, else the config's only one. An account that could
/// not be reached is a runtime error naming why (exit 1); an ambiguous or unknown one a usage
/// error (exit 2).
fn rotation_account(fleet: &keywarden::aws::accounts::Fleet, account: Option<&str>) -> Result<String, (u8, String)> {
    let accounts: Vec<String> = fleet.sdks().into_iter().map(|(id, _)| id.to_string()).collect();
    let unreachable: Vec<String> = fleet
        .failed()
        .iter()
        .filter(|a| account.is_none_or(|wanted| a.account_id == wanted))
        .flat_map(|a| {
            a.errors
                .iter()
                .map(|e| format!("account {}: {}: {}", a.account_id, e.operation, e.message))
        })
        .collect();
    let known = |a: &str| accounts.iter().any(|c| c == a);
    if !unreachable.is_empty() && (accounts.is_empty() || account.is_some_and(|a| !known(a))) {
        let why = format!("cannot reach the account: {}", unreachable.join("; "));
        return Err((EXIT_RUNTIME, why));
    }
    match (account, accounts.as_slice()) {
        (Some(a), _) if known(a) => Ok(a.to_string()),
        (Some(a), _) => Err((
            EXIT_USAGE,
            format!("account {a} is not one the config reads ({})", accounts.join(", ")),
        )),
        (None, [one]) => Ok(one.clone()),
        (None, _) => Err((
            EXIT_USAGE,
            format!(
                "--account is needed: the config reads {} accounts ({})",
                accounts.len(),
                accounts.join(", ")
            ),
        )),
    }
}
