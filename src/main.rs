//! The binary edge, the ripgrep way: parse the command line, build what the command needs once
//! (`Setup`: the config, logging, the runtime), run it, and map its one error type to the exit
//! codes docs/names.md lists. Decisions live in `app` and `core`, sentences in `output`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use keywarden::app::{audit, daemon};
use keywarden::aws::accounts::{Fleet, FleetRotator};
use keywarden::cli::{AccessFormat, Cli, Command, Format, HistoryFormat, StateCommand};
use keywarden::config::{self, Config};
use keywarden::output::sentences;
use keywarden::ports::{ActionJournal, UsageStore};
use keywarden::state::Store;
use keywarden::sys::logging;

/// How long a command waits for the daemon's lock on the state file: one that only reads
/// (`audit`, `history`) does not wait, one that acts (`reactivate`, `rotate`) waits out a run.
const READ_WAIT: Duration = Duration::ZERO;
const ACT_WAIT: Duration = Duration::from_secs(60);

/// Why a command did not do its job, and so its exit code (docs/names.md, "Exit codes";
/// `keywarden help` lists them too). A command that did its job returns its own code (0, or 3
/// for `audit` and `check-access` when they found something).
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// Exit 1: something failed on the way (AWS, the state, stdout).
    #[error("{0}")]
    Runtime(String),
    /// Exit 2: the command line or the config is wrong.
    #[error("{0}")]
    Usage(String),
    /// Exit 4: refused; nothing was changed.
    #[error("{0}")]
    Refused(String),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Runtime(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Refused(_) => 4,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("keywarden: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Where a command's log lines go: the daemon's to the journal (when its socket exists), the
/// others' to stderr; `history` only reads the journal and prints it, and logs nothing.
#[derive(Clone, Copy)]
enum Logs {
    Journald,
    Stderr,
    Off,
}

/// One command, start to end. Every command but `check-config` starts from a [`Setup`].
fn run(cli: Cli) -> Result<u8, Failure> {
    let config = cli.config.as_deref();
    let setup = |logs| Setup::new(config, logs);
    let stderr = Logs::Stderr;
    match cli.command {
        Command::CheckConfig { path } => check_config(path.as_deref().or(config)),
        Command::Run { once } => run_daemon(setup(Logs::Journald)?, once),
        Command::Audit { format, at } => run_audit(&setup(stderr)?, format, at),
        Command::History { since, user, format } => history(&setup(Logs::Off)?, since, user, format),
        Command::Reactivate {
            access_key_id,
            reason,
            snooze,
            force,
            password,
        } => {
            let ask = Reactivation {
                id: &access_key_id,
                reason: &reason,
                snooze,
                force,
                password,
            };
            reactivate(&setup(stderr)?, &ask)
        }
        Command::Rotate {
            user,
            reason,
            account,
            secret_id,
        } => rotate(
            &setup(stderr)?,
            &user,
            &reason,
            account.as_deref(),
            secret_id.as_deref(),
        ),
        Command::State { command } => state_command(&setup(stderr)?, command),
        Command::CheckAccess { format } => check_access(&setup(stderr)?, format),
        Command::Usage {
            target,
            format,
            policy,
            backfill,
        } => usage(&setup(stderr)?, target.as_deref(), format, policy, backfill),
    }
}

/// What every command but `check-config` needs, built once: the config (and where it came
/// from, for the daemon's reloads), logging set up from it ([`Logs`]), and the async runtime.
struct Setup {
    cfg: Config,
    path: PathBuf,
    /// The file was named explicitly and must exist (on reload too).
    required: bool,
    rt: tokio::runtime::Runtime,
}

impl Setup {
    fn new(config: Option<&Path>, logs: Logs) -> Result<Setup, Failure> {
        let (cfg, path, required) = load_config(config)?;
        match logs {
            Logs::Journald => logging::init(&cfg.log_level, cfg.log_format, true),
            Logs::Stderr => logging::init(&cfg.log_level, cfg.log_format, false),
            Logs::Off => {}
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::Runtime(format!("cannot start the async runtime: {e}")))?;
        Ok(Setup {
            cfg,
            path,
            required,
            rt,
        })
    }

    /// The state store and journal the config names, waiting `wait` for the daemon's lock.
    async fn store(&self, wait: Duration) -> Store {
        Store::open(&self.cfg, wait, None).await
    }

    /// The accounts the config reads, connected (a failed one is in `Fleet::failed`).
    async fn fleet(&self) -> Fleet {
        Fleet::connect(&self.cfg.aws, None).await
    }
}

/// The config, with where it came from and whether that file had to exist.
fn load_config(cli_path: Option<&Path>) -> Result<(Config, PathBuf, bool), Failure> {
    let (path, required) = config::resolve_path(cli_path);
    match config::load(&path, required) {
        Ok(cfg) => Ok((cfg, path, required)),
        Err(e) => Err(Failure::Usage(format!("invalid configuration:\n{e}"))),
    }
}

/// Writes a command's output to stdout. A reader that went away (`| head`) has what it
/// wanted: the rest is dropped quietly and the command's own exit code stands; any other
/// failure (`> /dev/full`) is said and is exit 1, never a panic.
fn emit(text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::Runtime(format!("cannot write the output to stdout: {e}"))),
    }
}

fn check_config(path: Option<&Path>) -> Result<u8, Failure> {
    let (cfg, _, _) = load_config(path)?;
    for w in cfg.warnings(chrono::Utc::now(), None) {
        eprintln!("keywarden: warning: {w}");
    }
    emit(&format!(
        "{}# effective configuration (file < KEYWARDEN_* environment < defaults filled in):\n{}",
        sentences::config_valid(cfg.source.as_deref()),
        cfg.effective_toml()
    ))?;
    Ok(0)
}

fn check_access(setup: &Setup, format: AccessFormat) -> Result<u8, Failure> {
    let report = setup
        .rt
        .block_on(keywarden::app::check_access::check_access(&setup.cfg));
    emit(&match format {
        AccessFormat::Json => format!("{}\n", keywarden::output::access::to_json(&report)),
        AccessFormat::Table => keywarden::output::access::to_table(&report),
    })?;
    for m in report.missing() {
        eprintln!("keywarden: missing permission: {m}");
    }
    Ok(report.exit_code() as u8)
}

fn run_audit(setup: &Setup, format: Format, at: Option<keywarden::core::model::Timestamp>) -> Result<u8, Failure> {
    let cfg = &setup.cfg;
    let now = at.unwrap_or_else(chrono::Utc::now);
    let (run, kept) = setup
        .rt
        .block_on(async {
            let fleet = setup.fleet().await;
            let store = setup.store(READ_WAIT).await;
            let kept = keywarden::state::Usage::open(cfg).await.profiles().await;
            let evidence = keywarden::app::usage::Evidence(&kept);
            audit::audit(cfg, &fleet, &store, &evidence, now)
                .await
                .map(|run| (run, kept))
        })
        .map_err(|e| Failure::Runtime(format!("{:#}", anyhow::Error::from(e))))?;
    for w in cfg.warnings(now, Some(&run.accounts)) {
        eprintln!("keywarden: warning: {w}");
    }
    if let Some(e) = &run.evidence_error {
        eprintln!("keywarden: warning: usage profiles cannot be read, so no key shows as held for live use: {e}");
    }
    let report = run.report;
    emit(&match format {
        Format::Json => {
            let usage = keywarden::app::usage::published(&run.accounts, &kept, now);
            format!("{}\n", report.to_json_with_usage(&usage))
        }
        Format::Table => report.to_table(),
        Format::Csv => report.to_csv(),
        Format::Ocsf => format!("{}\n", report.to_ocsf()),
    })?;
    if let Some(headline) = report.failure_headline() {
        eprintln!("keywarden: {headline}");
    }
    Ok(report.exit_code() as u8)
}

fn run_daemon(setup: Setup, once: bool) -> Result<u8, Failure> {
    let Setup {
        cfg,
        path,
        required,
        rt,
    } = setup;
    let opts = daemon::Options {
        config_path: path,
        config_required: required,
        once,
    };
    match rt.block_on(daemon::run(cfg, opts)) {
        Ok(code) => Ok(code as u8),
        Err(e) => {
            tracing::error!(error = %e, "keywarden stopped");
            Err(Failure::Runtime(e.to_string()))
        }
    }
}

fn state_command(setup: &Setup, cmd: StateCommand) -> Result<u8, Failure> {
    use keywarden::app::state_admin::{self, AdminError};
    let cfg = &setup.cfg;
    let said = setup.rt.block_on(async {
        match &cmd {
            StateCommand::Init => state_admin::init(cfg).await.map(|said| format!("{said}\n")),
            StateCommand::Import { file } => state_admin::import(cfg, file).await.map(|i| {
                sentences::imported(
                    i.findings,
                    i.failures,
                    i.snoozes,
                    file,
                    i.journal_entries,
                    &i.journal_path,
                )
            }),
        }
    });
    match said {
        Ok(said) => emit(&said).map(|()| 0),
        Err(e @ AdminError::NotATable) => Err(Failure::Usage(e.to_string())),
        Err(e) => Err(Failure::Runtime(e.to_string())),
    }
}

/// `keywarden usage`: the report, or with `--policy` the policy of the selected keys.
fn usage(
    setup: &Setup,
    target: Option<&str>,
    format: HistoryFormat,
    policy: bool,
    backfill: bool,
) -> Result<u8, Failure> {
    use keywarden::output::usage as out;
    let cfg = &setup.cfg;
    let run = setup.rt.block_on(async {
        let fleet = setup.fleet().await;
        let store = keywarden::state::Usage::open(cfg).await;
        keywarden::app::usage::usage(cfg, &fleet, &store, target, backfill, chrono::Utc::now()).await
    });
    if backfill {
        let t = &run.tally;
        eprintln!(
            "keywarden: {}",
            sentences::backfilled(
                t.requests,
                t.throttled,
                t.recorded,
                t.duplicates,
                t.malformed + t.unknown_key
            )
        );
    }
    if policy {
        let profiles: Vec<_> = run.keys.iter().map(|(_, u)| &u.profile).collect();
        let draft = keywarden::core::usage::least_privilege::draft(&profiles);
        for note in &draft.notes {
            eprintln!("keywarden: note: {note}");
        }
        emit(&format!("{}\n", out::policy_json(&draft)))?;
    } else {
        emit(&match format {
            HistoryFormat::Json => format!("{}\n", out::to_json(&run.keys)),
            HistoryFormat::Table => out::to_table(&run.keys),
        })?;
    }
    for e in &run.errors {
        eprintln!("keywarden: {e}");
    }
    Ok(if run.errors.is_empty() { 0 } else { 1 })
}

fn history(
    setup: &Setup,
    since: Option<chrono::TimeDelta>,
    user: Option<glob::Pattern>,
    format: HistoryFormat,
) -> Result<u8, Failure> {
    let cfg = &setup.cfg;
    let (read, missing) = setup.rt.block_on(async {
        let store = setup.store(READ_WAIT).await;
        (store.read().await, store.missing_journal())
    });
    if let Some(path) = missing {
        eprintln!("keywarden: {}", sentences::no_journal(cfg.source.as_deref(), &path));
    }
    let read = read.map_err(|e| Failure::Runtime(e.to_string()))?;
    for skipped in &read.skipped {
        eprintln!("keywarden: warning: {skipped}");
    }
    let query = keywarden::core::journal::Query { since, user };
    let selected = keywarden::core::journal::select(&read.entries, &query, chrono::Utc::now());
    emit(&match format {
        HistoryFormat::Json => format!("{}\n", keywarden::output::history::to_json(&selected)),
        HistoryFormat::Table => keywarden::output::history::to_table(&selected),
    })?;
    Ok(0)
}

/// `keywarden reactivate`'s arguments.
struct Reactivation<'a> {
    id: &'a str,
    reason: &'a str,
    snooze: Option<chrono::TimeDelta>,
    force: bool,
    password: bool,
}

fn reactivate(setup: &Setup, ask: &Reactivation<'_>) -> Result<u8, Failure> {
    use keywarden::app::reactivate::{self, ReactivateError, Request};
    let (access_key_id, reason, force) = (ask.id, ask.reason, ask.force);
    if ask.password {
        keywarden::sys::host::no_core_dumps();
    }
    let cfg = &setup.cfg;
    let snooze = ask.snooze;
    let snooze = snooze.unwrap_or(cfg.policy.grace_period);
    if snooze <= chrono::TimeDelta::zero() {
        return Err(Failure::Usage(format!(
            "a snooze of 0s (--snooze, else enforcement.grace_period) would let the next run deactivate {access_key_id} again at once; give --snooze, e.g. --snooze 7d"
        )));
    }
    let now = chrono::Utc::now();
    let until = now
        .checked_add_signed(snooze)
        .filter(keywarden::sys::timefmt::writable)
        .ok_or_else(|| {
            Failure::Usage(
                "a snooze ending after 9999-12-31 cannot be kept in the state; give a shorter --snooze, or exempt the user in the config".into(),
            )
        })?;
    let run = keywarden::sys::host::run_info();
    let operator = keywarden::sys::host::operator();
    let req = Request {
        access_key_id,
        reason,
        until,
        force,
        operator: &operator,
        now,
        run: &run,
    };
    let result = setup.rt.block_on(async {
        let store = setup.store(ACT_WAIT).await;
        if let Some(path) = store.missing_journal() {
            return Err(ReactivateError::Refused(format!(
                "{access_key_id} is not in the action journal: {}",
                sentences::no_journal(cfg.source.as_deref(), &path)
            )));
        }
        let fleet = setup.fleet().await;
        if ask.password {
            let rotator = FleetRotator {
                fleet: &fleet,
                settings: &cfg.rotation,
            };
            let prefix = &cfg.rotation.secret_prefix;
            let done =
                keywarden::app::reactivate_password::reactivate(&req, prefix, &fleet, &rotator, &store, &store).await?;
            let secret = done.secret_arn.as_deref().map(|arn| (done.secret_name.as_str(), arn));
            return Ok(sentences::password_restored(
                access_key_id,
                &done.account_id,
                secret,
                &done.until,
            ));
        }
        let done = reactivate::reactivate(&req, &fleet, &store, &store).await?;
        Ok(sentences::reactivated(
            access_key_id,
            &done.user,
            &done.account_id,
            done.changed,
            &done.until,
        ))
    });
    match result {
        Ok(answer) => emit(&answer).map(|()| 0),
        Err(e @ ReactivateError::Refused(_)) => Err(Failure::Refused(e.to_string())),
        Err(e) => Err(Failure::Runtime(e.to_string())),
    }
}

/// `keywarden rotate`: acts whatever `enforcement.mode` says (an operator's explicit command,
/// as `reactivate` is).
fn rotate(
    setup: &Setup,
    user: &str,
    reason: &str,
    account: Option<&str>,
    secret_id: Option<&str>,
) -> Result<u8, Failure> {
    use keywarden::app::rotate::{self, Request, RotateError};
    use keywarden::core::rotation::AccountChoice;
    keywarden::sys::host::no_core_dumps();
    let cfg = &setup.cfg;
    let run = keywarden::sys::host::run_info();
    let operator = keywarden::sys::host::operator();
    let (account_id, result) = setup.rt.block_on(async {
        let store = setup.store(ACT_WAIT).await;
        let fleet = setup.fleet().await;
        let reached: Vec<String> = fleet.sdks().into_iter().map(|(id, _)| id.to_string()).collect();
        let unreached: Vec<(String, String)> = fleet
            .failed()
            .iter()
            .flat_map(|a| {
                a.errors
                    .iter()
                    .map(|e| (a.account_id.clone(), format!("{}: {}", e.operation, e.message)))
            })
            .collect();
        let account_id = keywarden::core::rotation::account(&reached, &unreached, account).map_err(|e| match e {
            AccountChoice::Unreachable(_) => Failure::Runtime(e.to_string()),
            AccountChoice::Usage(_) => Failure::Usage(e.to_string()),
        })?;
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
        let rotator = FleetRotator {
            fleet: &fleet,
            settings: &cfg.rotation,
        };
        let done = rotate::rotate(&req, &fleet, &rotator, &store).await;
        Ok::<_, Failure>((account_id, done))
    })?;
    match result {
        Ok(done) => emit(&sentences::rotated(
            user,
            &account_id,
            done.new_access_key_id.as_deref(),
            &done.secret_name,
            done.secret_arn.as_deref(),
            &done.old_access_key_id,
        ))
        .map(|()| 0),
        Err(e @ RotateError::Refused(_)) => Err(Failure::Refused(e.to_string())),
        Err(e) => Err(Failure::Runtime(e.to_string())),
    }
}
