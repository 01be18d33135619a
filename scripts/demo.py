"""keywarden's whole job on this machine (see scripts/demo): moto (the local IAM emulator) with
sample users whose keys break each rule, then an audit, the daemon in dry-run with its
metrics, the switch to enforce by SIGHUP, the action journal, an undo, and a clean stop.
Everything shown is keywarden's real output or derived from its real log events and endpoints.
"""

import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "moto"))
from harness import Moto  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import free_port, wait_for  # noqa: E402


def step(n, title):
    print(f"\n== {n}. {title}\n", flush=True)


def say(text):
    print(text, flush=True)


def seed(moto):
    """Sample users: one per rule, one exempt by config, one by tag, a team's user, a rotation
    in progress. Returns the key ids the demo refers to."""
    iam = moto.iam()
    users = {"alice": "/", "bob": "/", "carol": "/", "deploy-bot": "/service/", "break-glass-admin": "/",
             "batch-job": "/", "pay-api": "/", "rotator": "/"}
    for name, path in users.items():
        iam.create_user(UserName=name, Path=path)
    key = lambda u: iam.create_access_key(UserName=u)["AccessKey"]  # noqa: E731
    use = lambda k: moto.iam(k["AccessKeyId"], k["SecretAccessKey"]).get_user()  # noqa: E731
    moto.clock_days(-120)
    alice_old, bob, glass, rot_old = key("alice"), key("bob"), key("break-glass-admin"), key("rotator")
    moto.clock_days(-60)
    key("deploy-bot")
    key("batch-job")
    pay = key("pay-api")
    moto.clock_days(-5)
    alice_new = key("alice")
    moto.clock_days(0)
    for k in (bob, alice_new, glass, rot_old):
        use(k)
    use(key("carol"))
    key("rotator")  # the new key of a rotation: created, not used yet
    iam.tag_user(UserName="pay-api", Tags=[{"Key": "team", "Value": "payments"}])
    until = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)).strftime("%Y-%m-%d")
    iam.tag_user(UserName="batch-job", Tags=[
        {"Key": "team", "Value": "data"},
        {"Key": "keywarden:exempt-until", "Value": until},
        {"Key": "keywarden:exempt-reason", "Value": "DATA-12 quarterly batch"},
    ])
    return {"alice_old": alice_old["AccessKeyId"], "pay": pay["AccessKeyId"]}


def config_text(moto, d, port, mode, grace):
    return f"""[schedule]
cron = "*/2 * * * * *"

[aws]
region = "us-east-1"
endpoint_url = "{moto.endpoint}"

[enforcement]
mode = "{mode}"
grace_period = "{grace}"
max_deactivations_per_run = 2

[state]
path = "{d}/state.json"

[metrics]
listen = "127.0.0.1:{port}"

[log]
format = "json"

[owners]
tags = ["team"]
default = "security"
[[owners.map]]
path_prefix = "/service/"
owner = "platform"

[exemptions_from_tags]
enabled = true

[[exemptions]]
user = "break-glass-*"
rules = ["max_key_age"]
reason = "SEC-123 rotated by hand"
"""


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


class Daemon:
    def __init__(self, binary, config, env, logfile):
        self.logfile = logfile
        self.seen = 0
        self.proc = subprocess.Popen([binary, "run", "--config", config], env=env,
                                     stdout=subprocess.DEVNULL, stderr=open(logfile, "w"))

    def events(self):
        """Every JSON log event so far."""
        with open(self.logfile) as f:
            out = []
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
            return out

    def new_events(self):
        events = self.events()
        fresh, self.seen = events[self.seen:], len(events)
        return fresh


def fields(e):
    """keywarden's JSON log events are flat: message and fields side by side."""
    return e


def describe(e):
    """One line for a log event of a decision."""
    f = fields(e)
    msg = f.get("message", "")
    who = f"{f.get('access_key_id', '')} of {f.get('user', '')} (owner {f.get('owner', '?')})"
    if msg.startswith("deactivated access key"):
        return f"  deactivated     {who}: {f.get('rule')}"
    if msg.startswith("would deactivate"):
        return f"  would deactivate {who}: {f.get('rule')} (dry-run)"
    if msg.startswith("deactivation held"):
        return f"  held            {who}: its kept key {f.get('kept_access_key_id')} has not been used yet"
    if msg.startswith("deactivation cap reached"):
        return f"  capped          {f.get('held_back')} more key(s) wait for the next run (cap {f.get('cap')})"
    return None


def main():
    binary = sys.argv[1]
    moto = Moto()
    daemon = None
    try:
        keys = seed(moto)
        env = moto.env()
        with tempfile.TemporaryDirectory() as d:
            port = free_port()
            config = os.path.join(d, "keywarden.toml")
            with open(config, "w") as f:
                f.write(config_text(moto, d, port, "dry-run", "7d"))
            kw = lambda *args: subprocess.run([binary, *args, "--config", config], env=env,  # noqa: E731
                                              capture_output=True, text=True)

            step(1, "keywarden audit: one read-only audit (never writes, never changes a key)")
            out = kw("audit")
            say(out.stdout.rstrip())
            say(f"(exit code {out.returncode}: 0 no violation, 3 violations found, 1 error, 2 bad config)")
            summary = json.loads(kw("audit", "--format", "json").stdout)["summary"]
            say(f"\n$ keywarden audit --format json | jq -c .summary\n{json.dumps(summary)}")
            say("\nmax_key_age only reports by default (action = \"report\"): an old key is usually in use,\n"
                "and turning it off breaks whatever uses it. Its fix is a rotation (step 5).")

            step(2, "keywarden run: the daemon, every 2 s, in dry-run (the default), grace period 7 days")
            daemon = Daemon(binary, config, env, os.path.join(d, "daemon.log"))
            base = f"http://127.0.0.1:{port}"
            wait_for("the first audit", lambda: any(fields(e).get("message") == "audit finished"
                                                    for e in daemon.events()), 30)
            say(f"landing page: {base}/   metrics: {base}/metrics   report: {base}/api/v1/report")
            page = get(base + "/metrics")
            say("excerpt of /metrics (violations by rule and by owner; deadlines, 7 days after first seen):")
            for line in page.splitlines():
                if line.startswith(("keywarden_violations{", "keywarden_owner_violations{")):
                    say("  " + line)
                elif line.startswith("keywarden_access_key_deactivation_deadline_timestamp_seconds{"):
                    series, value = line.rsplit(" ", 1)
                    when = datetime.datetime.fromtimestamp(float(value), datetime.timezone.utc)
                    say(f"  {series} {value}  ({when:%Y-%m-%d %H:%M} UTC)")
            say("\nits log, so far:")
            for line in dict.fromkeys(filter(None, (describe(e) for e in daemon.new_events()))):
                say(line)

            step(3, "enforce: the config switched to mode = \"enforce\" and a 4 s grace period, then SIGHUP")
            with open(config, "w") as f:
                f.write(config_text(moto, d, port, "enforce", "4s"))
            daemon.proc.send_signal(signal.SIGHUP)
            wait_for("the reload", lambda: any(fields(e).get("message") == "configuration reloaded"
                                               for e in daemon.events()), 20)
            say("configuration reloaded (same process, pid %d)" % daemon.proc.pid)
            wait_for("three deactivations", lambda: sum(fields(e).get("message") == "deactivated access key"
                                                        for e in daemon.events()) >= 3, 30)
            events = [line for line in (describe(e) for e in daemon.new_events()) if line]
            for line in dict.fromkeys(x for x in events if "would deactivate" not in x):
                say(line)

            step(4, "keywarden history, then keywarden reactivate (an application still needed alice's key)")
            say("$ keywarden history\n" + kw("history").stdout.rstrip())
            out = kw("reactivate", keys["alice_old"], "--reason", "INC-7: the report job still uses it",
                     "--snooze", "1h")
            say(f"\n$ keywarden reactivate {keys['alice_old']} --reason \"INC-7: ...\" --snooze 1h\n"
                + (out.stdout or out.stderr).rstrip())
            daemon.new_events()
            wait_for("a run after the reactivation", lambda: any(fields(e).get("message") == "audit finished"
                                                                 for e in daemon.new_events()), 20)
            status = {k["AccessKeyId"]: k["Status"] for k in moto.iam().list_access_keys(UserName="alice")["AccessKeyMetadata"]}
            report = json.loads(get(base + "/api/v1/report"))
            f = next(x for x in report["findings"] if x["access_key_id"] == keys["alice_old"])
            say(f"next run: {keys['alice_old']} is {status[keys['alice_old']]}; its finding: "
                f"exemption_source={f['exemption_source']}, deactivate_after={f['deactivate_after']}")

            step(5, "keywarden rotate: a new key for carol, handed over in Secrets Manager")
            out = kw("rotate", "carol", "--reason", "CIS 1.14, CHG-7")
            say("$ keywarden rotate carol --reason \"CIS 1.14, CHG-7\"\n" + (out.stdout or out.stderr).rstrip())
            say("(the application reads the secret; once the new key is used, multiple_active_keys\n"
                "deactivates the old one after the grace period; `keywarden history` shows the rotation)")

            step(6, "a clean stop (SIGTERM)")
            daemon.proc.send_signal(signal.SIGTERM)
            code = daemon.proc.wait(timeout=20)
            say(f"keywarden run exited with {code}")
            say("""
Next: docs/install.md (the .deb/.rpm and the systemd unit), docs/owners.md (warnings to key
owners through Alertmanager), docs/enforcement.md (enforcement windows) and docs/undo.md.""")
    finally:
        if daemon is not None and daemon.proc.poll() is None:
            daemon.proc.kill()
        moto.stop()


if __name__ == "__main__":
    main()
