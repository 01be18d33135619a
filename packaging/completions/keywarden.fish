# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_keywarden_global_optspecs
    string join \n config= h/help V/version
end

function __fish_keywarden_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_keywarden_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_keywarden_using_subcommand
    set -l cmd (__fish_keywarden_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c keywarden -n "__fish_keywarden_needs_command" -l config -d 'Config file (default: $KEYWARDEN_CONFIG, else /etc/keywarden/keywarden.toml)' -r -F
complete -c keywarden -n "__fish_keywarden_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c keywarden -n "__fish_keywarden_needs_command" -s V -l version -d 'Print version'
complete -c keywarden -n "__fish_keywarden_needs_command" -f -a "run" -d 'The daemon: audits on the cron schedule, serves metrics, reloads on SIGHUP'
complete -c keywarden -n "__fish_keywarden_needs_command" -f -a "audit" -d 'One read-only audit: never writes state, never changes a key'
complete -c keywarden -n "__fish_keywarden_needs_command" -f -a "history" -d 'The action journal: what keywarden did (and would have done in dry-run), newest first'
complete -c keywarden -n "__fish_keywarden_needs_command" -f -a "reactivate" -d 'Undo a deactivation keywarden made: set the key Active again and snooze it, so that the daemon does not deactivate it again before the snooze ends (exit 4: refused, nothing changed)'
complete -c keywarden -n "__fish_keywarden_needs_command" -f -a "rotate" -d 'Rotate USER\'s access key: make a new key, store it in Secrets Manager (JSON AccessKeyId, SecretAccessKey) and journal it; the old key is deactivated by multiple_active_keys once the new one is used (exit 4: refused, nothing changed)'
complete -c keywarden -n "__fish_keywarden_needs_command" -f -a "usage" -d 'What uses each active access key (from where, calling what), what kind of workload that is, and what should replace the key; --policy prints a least-privilege policy of the actions seen'
complete -c keywarden -n "__fish_keywarden_needs_command" -f -a "state" -d 'Set up the DynamoDB state table (state.backend = "dynamodb"), or move a file state into it'
complete -c keywarden -n "__fish_keywarden_needs_command" -f -a "check-access" -d 'Every AWS action the config needs, per account, and whether these credentials may call it (IAM\'s policy simulator; exit 3 names each missing action, 1 when it cannot tell)'
complete -c keywarden -n "__fish_keywarden_needs_command" -f -a "check-config" -d 'Parse and validate the config, print the effective config'
complete -c keywarden -n "__fish_keywarden_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c keywarden -n "__fish_keywarden_using_subcommand run" -l config -d 'Config file (default: $KEYWARDEN_CONFIG, else /etc/keywarden/keywarden.toml)' -r -F
complete -c keywarden -n "__fish_keywarden_using_subcommand run" -l once -d 'One audit cycle, then exit (0 if complete, 1 if any read failed)'
complete -c keywarden -n "__fish_keywarden_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c keywarden -n "__fish_keywarden_using_subcommand audit" -l format -r -f -a "table\t''
json\t''
ocsf\t'OCSF 1.3.0 Detection Findings (class 2004), one JSON array'
csv\t'One row per finding, every JSON field (RFC 4180)'"
complete -c keywarden -n "__fish_keywarden_using_subcommand audit" -l at -d 'Evaluate ages and deadlines as of this RFC 3339 instant instead of now' -r
complete -c keywarden -n "__fish_keywarden_using_subcommand audit" -l config -d 'Config file (default: $KEYWARDEN_CONFIG, else /etc/keywarden/keywarden.toml)' -r -F
complete -c keywarden -n "__fish_keywarden_using_subcommand audit" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c keywarden -n "__fish_keywarden_using_subcommand history" -l since -d 'Only actions at most this old, e.g. 24h, 7d' -r
complete -c keywarden -n "__fish_keywarden_using_subcommand history" -l user -d 'Only users matching this glob, e.g. "ci-*"' -r
complete -c keywarden -n "__fish_keywarden_using_subcommand history" -l format -r -f -a "table\t''
json\t''"
complete -c keywarden -n "__fish_keywarden_using_subcommand history" -l config -d 'Config file (default: $KEYWARDEN_CONFIG, else /etc/keywarden/keywarden.toml)' -r -F
complete -c keywarden -n "__fish_keywarden_using_subcommand history" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c keywarden -n "__fish_keywarden_using_subcommand reactivate" -l reason -d 'Why (kept in the action journal with who ran the command)' -r
complete -c keywarden -n "__fish_keywarden_using_subcommand reactivate" -l snooze -d 'How long the daemon leaves the key alone (default: enforcement.grace_period)' -r
complete -c keywarden -n "__fish_keywarden_using_subcommand reactivate" -l config -d 'Config file (default: $KEYWARDEN_CONFIG, else /etc/keywarden/keywarden.toml)' -r -F
complete -c keywarden -n "__fish_keywarden_using_subcommand reactivate" -l force -d 'Reactivate even if the journal\'s last entry is not a deactivation by keywarden, or snooze a key that is already Active'
complete -c keywarden -n "__fish_keywarden_using_subcommand reactivate" -l password -d 'ID is a user whose console password keywarden deleted: give it a new login profile with a temporary password, handed over in Secrets Manager (rotation.secret_prefix + ACCOUNT/USER/password) and to be changed at first sign-in'
complete -c keywarden -n "__fish_keywarden_using_subcommand reactivate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c keywarden -n "__fish_keywarden_using_subcommand rotate" -l reason -d 'Why (kept in the action journal with who ran the command)' -r
complete -c keywarden -n "__fish_keywarden_using_subcommand rotate" -l account -d 'The user\'s account (default: the one account the config reads)' -r
complete -c keywarden -n "__fish_keywarden_using_subcommand rotate" -l secret-id -d 'The secret to store the new key in (default: rotation.secret_prefix + ACCOUNT/USER)' -r
complete -c keywarden -n "__fish_keywarden_using_subcommand rotate" -l config -d 'Config file (default: $KEYWARDEN_CONFIG, else /etc/keywarden/keywarden.toml)' -r -F
complete -c keywarden -n "__fish_keywarden_using_subcommand rotate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c keywarden -n "__fish_keywarden_using_subcommand usage" -l format -r -f -a "table\t''
json\t''"
complete -c keywarden -n "__fish_keywarden_using_subcommand usage" -l config -d 'Config file (default: $KEYWARDEN_CONFIG, else /etc/keywarden/keywarden.toml)' -r -F
complete -c keywarden -n "__fish_keywarden_using_subcommand usage" -l policy -d 'Print an IAM policy allowing the actions the selected keys were seen calling'
complete -c keywarden -n "__fish_keywarden_using_subcommand usage" -l backfill -d 'Read CloudTrail\'s LookupEvents first (last 90 days, 2 requests per second) for every selected key whose backfill is not finished'
complete -c keywarden -n "__fish_keywarden_using_subcommand usage" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c keywarden -n "__fish_keywarden_using_subcommand state; and not __fish_seen_subcommand_from init import help" -l config -d 'Config file (default: $KEYWARDEN_CONFIG, else /etc/keywarden/keywarden.toml)' -r -F
complete -c keywarden -n "__fish_keywarden_using_subcommand state; and not __fish_seen_subcommand_from init import help" -s h -l help -d 'Print help'
complete -c keywarden -n "__fish_keywarden_using_subcommand state; and not __fish_seen_subcommand_from init import help" -f -a "init" -d 'Create the table of [state.dynamodb] (on-demand billing, TTL on `ttl`); an existing one is checked'
complete -c keywarden -n "__fish_keywarden_using_subcommand state; and not __fish_seen_subcommand_from init import help" -f -a "import" -d 'Copy a state file and its journal into an empty table (before the daemons use it)'
complete -c keywarden -n "__fish_keywarden_using_subcommand state; and not __fish_seen_subcommand_from init import help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c keywarden -n "__fish_keywarden_using_subcommand state; and __fish_seen_subcommand_from init" -l config -d 'Config file (default: $KEYWARDEN_CONFIG, else /etc/keywarden/keywarden.toml)' -r -F
complete -c keywarden -n "__fish_keywarden_using_subcommand state; and __fish_seen_subcommand_from init" -s h -l help -d 'Print help'
complete -c keywarden -n "__fish_keywarden_using_subcommand state; and __fish_seen_subcommand_from import" -l config -d 'Config file (default: $KEYWARDEN_CONFIG, else /etc/keywarden/keywarden.toml)' -r -F
complete -c keywarden -n "__fish_keywarden_using_subcommand state; and __fish_seen_subcommand_from import" -s h -l help -d 'Print help'
complete -c keywarden -n "__fish_keywarden_using_subcommand state; and __fish_seen_subcommand_from help" -f -a "init" -d 'Create the table of [state.dynamodb] (on-demand billing, TTL on `ttl`); an existing one is checked'
complete -c keywarden -n "__fish_keywarden_using_subcommand state; and __fish_seen_subcommand_from help" -f -a "import" -d 'Copy a state file and its journal into an empty table (before the daemons use it)'
complete -c keywarden -n "__fish_keywarden_using_subcommand state; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c keywarden -n "__fish_keywarden_using_subcommand check-access" -l format -r -f -a "table\t''
json\t''"
complete -c keywarden -n "__fish_keywarden_using_subcommand check-access" -l config -d 'Config file (default: $KEYWARDEN_CONFIG, else /etc/keywarden/keywarden.toml)' -r -F
complete -c keywarden -n "__fish_keywarden_using_subcommand check-access" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c keywarden -n "__fish_keywarden_using_subcommand check-config" -l config -d 'Config file (default: $KEYWARDEN_CONFIG, else /etc/keywarden/keywarden.toml)' -r -F
complete -c keywarden -n "__fish_keywarden_using_subcommand check-config" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c keywarden -n "__fish_keywarden_using_subcommand help; and not __fish_seen_subcommand_from run audit history reactivate rotate usage state check-access check-config help" -f -a "run" -d 'The daemon: audits on the cron schedule, serves metrics, reloads on SIGHUP'
complete -c keywarden -n "__fish_keywarden_using_subcommand help; and not __fish_seen_subcommand_from run audit history reactivate rotate usage state check-access check-config help" -f -a "audit" -d 'One read-only audit: never writes state, never changes a key'
complete -c keywarden -n "__fish_keywarden_using_subcommand help; and not __fish_seen_subcommand_from run audit history reactivate rotate usage state check-access check-config help" -f -a "history" -d 'The action journal: what keywarden did (and would have done in dry-run), newest first'
complete -c keywarden -n "__fish_keywarden_using_subcommand help; and not __fish_seen_subcommand_from run audit history reactivate rotate usage state check-access check-config help" -f -a "reactivate" -d 'Undo a deactivation keywarden made: set the key Active again and snooze it, so that the daemon does not deactivate it again before the snooze ends (exit 4: refused, nothing changed)'
complete -c keywarden -n "__fish_keywarden_using_subcommand help; and not __fish_seen_subcommand_from run audit history reactivate rotate usage state check-access check-config help" -f -a "rotate" -d 'Rotate USER\'s access key: make a new key, store it in Secrets Manager (JSON AccessKeyId, SecretAccessKey) and journal it; the old key is deactivated by multiple_active_keys once the new one is used (exit 4: refused, nothing changed)'
complete -c keywarden -n "__fish_keywarden_using_subcommand help; and not __fish_seen_subcommand_from run audit history reactivate rotate usage state check-access check-config help" -f -a "usage" -d 'What uses each active access key (from where, calling what), what kind of workload that is, and what should replace the key; --policy prints a least-privilege policy of the actions seen'
complete -c keywarden -n "__fish_keywarden_using_subcommand help; and not __fish_seen_subcommand_from run audit history reactivate rotate usage state check-access check-config help" -f -a "state" -d 'Set up the DynamoDB state table (state.backend = "dynamodb"), or move a file state into it'
complete -c keywarden -n "__fish_keywarden_using_subcommand help; and not __fish_seen_subcommand_from run audit history reactivate rotate usage state check-access check-config help" -f -a "check-access" -d 'Every AWS action the config needs, per account, and whether these credentials may call it (IAM\'s policy simulator; exit 3 names each missing action, 1 when it cannot tell)'
complete -c keywarden -n "__fish_keywarden_using_subcommand help; and not __fish_seen_subcommand_from run audit history reactivate rotate usage state check-access check-config help" -f -a "check-config" -d 'Parse and validate the config, print the effective config'
complete -c keywarden -n "__fish_keywarden_using_subcommand help; and not __fish_seen_subcommand_from run audit history reactivate rotate usage state check-access check-config help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c keywarden -n "__fish_keywarden_using_subcommand help; and __fish_seen_subcommand_from state" -f -a "init" -d 'Create the table of [state.dynamodb] (on-demand billing, TTL on `ttl`); an existing one is checked'
complete -c keywarden -n "__fish_keywarden_using_subcommand help; and __fish_seen_subcommand_from state" -f -a "import" -d 'Copy a state file and its journal into an empty table (before the daemons use it)'
