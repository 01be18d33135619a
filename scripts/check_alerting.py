"""Warnings reach key owners, tested with the real servers (see scripts/check-alerting).

keywarden's daemon (dry-run, every 2 s) audits moto; Prometheus scrapes it every second and
evaluates the shipped alert rules file unchanged; Alertmanager routes with the shipped route
example, only its intervals shortened and each receiver given a webhook of this script. Checks:

 1. each owner's receiver gets KeywardenDeactivationIn7Days for its own keys, and no other
    receiver gets them (team-payments by tag, team-data by [[owners.map]], the catch-all for
    owners.default); a key due within a day also gets KeywardenDeactivationDueSoon;
 2. a key exempt by its user's tags never alerts;
 3. after the key is rotated (new key, old one deleted) its alert resolves at its receiver;
 4. a key AWS found exposed (its quarantine policy on the user) pages the security on-call
    and reaches its owner's receiver (KeywardenAccessKeyExposed), and no one else;
 5. every PromQL expression of the Grafana dashboard (variables substituted) returns at least
    one series from this Prometheus.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "moto"))
from harness import Moto  # noqa: E402
from checks import CheckFailed, expect, free_port, wait_for  # noqa: E402

RULES = os.path.join(REPO, "packaging/prometheus/keywarden-alerts.yml")
ROUTE = os.path.join(REPO, "packaging/prometheus/alertmanager-route.yml")
DASHBOARD = os.path.join(REPO, "packaging/grafana/keywarden-dashboard.json")
STARTED = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - STARTED:5.1f}s] {msg}", flush=True)


def get_json(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())
    except OSError:
        return None


class Webhooks:
    """One HTTP server; each receiver posts to /<receiver name>. Keeps every payload."""

    def __init__(self):
        self.received = {}
        self.lock = threading.Lock()
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with hooks.lock:
                    hooks.received.setdefault(self.path.strip("/"), []).append(body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self, receiver, alertname=None, status=None):
        """Every alert the receiver got: (status, labels) pairs."""
        with self.lock:
            payloads = list(self.received.get(receiver, []))
        return [(a["status"], a["labels"]) for p in payloads for a in p["alerts"]
                if (alertname is None or a["labels"].get("alertname") == alertname)
                and (status is None or a["status"] == status)]

    def keys(self, receiver, alertname, status="firing"):
        return {labels.get("access_key_id") for _, labels in self.alerts(receiver, alertname, status)}

    def every_key(self):
        with self.lock:
            names = list(self.received)
        return {name: {labels.get("access_key_id") for _, labels in self.alerts(name)} for name in names}

    def stop(self):
        self.server.shutdown()


def seed(moto):
    """One idle key (unused 60 days: unused_key) per user; owners by tag, map and default; a
    console password (made today) for legacy."""
    iam = moto.iam()
    users = {"pay-app": "/", "etl": "/data/", "etl-nightly": "/data/", "legacy": "/", "legacy-2": "/",
             "exempt-job": "/"}
    for name, path in users.items():
        iam.create_user(UserName=name, Path=path)
    moto.clock_days(-60)
    keys = {name: iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"] for name in users}
    moto.clock_days(0)
    # Console access for one user: the dashboard's panels of other credentials have a series.
    iam.create_login_profile(UserName="legacy", Password="Correct-Horse-9!")
    iam.tag_user(UserName="pay-app", Tags=[{"Key": "owner", "Value": "team-payments"}])
    until = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)).strftime("%Y-%m-%d")
    iam.tag_user(UserName="exempt-job", Tags=[
        {"Key": "owner", "Value": "team-payments"},
        {"Key": "keywarden:exempt-until", "Value": until},
        {"Key": "keywarden:exempt-reason", "Value": "SEC-42 quarterly batch"},
    ])
    return keys


def state_with_old_findings(path, keys):
    """etl-nightly was first seen 6.5 days ago (due within a day); legacy and legacy-2 8 and 9
    days ago (overdue: dry-run counts the one the cap of 1 allows as a deactivation it would
    make, and holds the other back)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ago = lambda d: (now - datetime.timedelta(days=d)).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    findings = [
        {"account_id": "123456789012", "user": "etl-nightly", "access_key_id": keys["etl-nightly"],
         "rule": "unused_key", "first_seen": ago(6.5)},
        {"account_id": "123456789012", "user": "legacy", "access_key_id": keys["legacy"],
         "rule": "unused_key", "first_seen": ago(8)},
        {"account_id": "123456789012", "user": "legacy-2", "access_key_id": keys["legacy-2"],
         "rule": "unused_key", "first_seen": ago(9)},
    ]
    with open(path, "w") as f:
        json.dump({"schema_version": 1, "findings": findings, "failures": []}, f)


def alertmanager_config(hooks):
    """The shipped route with shorter intervals, and a webhook for each of its receivers."""
    with open(ROUTE) as f:
        cfg = yaml.safe_load(f)

    def shorten(route):
        for key, value in (("group_wait", "1s"), ("group_interval", "1s"), ("repeat_interval", "1h")):
            if key in route or route is cfg["route"]:
                route[key] = value
        for child in route.get("routes", []):
            shorten(child)

    shorten(cfg["route"])
    for r in cfg["receivers"]:
        r["webhook_configs"] = [{"url": f"http://127.0.0.1:{hooks.port}/{r['name']}", "send_resolved": True}]
    return cfg


class Servers:
    def __init__(self, workdir):
        self.dir = workdir
        self.procs = []

    def start(self, name, args, env=None):
        out = open(os.path.join(self.dir, f"{name}.log"), "w")
        p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        self.procs.append((name, p))
        return p

    def log_tail(self, name, lines=30):
        path = os.path.join(self.dir, f"{name}.log")
        if not os.path.exists(path):
            return ""
        with open(path) as f:
            return "".join(f.readlines()[-lines:])

    def stop(self):
        for name, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def dashboard_exprs():
    with open(DASHBOARD) as f:
        d = json.load(f)
    for panel in d["panels"]:
        for t in panel.get("targets", []):
            yield panel["title"], t["expr"]


def check_dashboard(prom):
    for title, expr in dashboard_exprs():
        query = expr.replace("$account", ".*")
        expect("$" not in query, f"unsubstituted variable in {title!r}: {query}")

        def series():
            url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": query})
            r = get_json(url)
            return r["data"]["result"] if r and r.get("status") == "success" and r["data"]["result"] else None

        result = wait_for(f"a series for the dashboard panel {title!r}: {query}", series, 30)
        log(f"dashboard {title!r}: {len(result)} series for {query}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keywarden", required=True)
    args = ap.parse_args()

    workdir = tempfile.mkdtemp(prefix="kw-alerting-")
    moto = Moto()
    hooks = Webhooks()
    servers = Servers(workdir)
    ok = False
    try:
        keys = seed(moto)
        # A share of one operation fails with 503 (and is retried), so the request-error panel
        # has data. (Throttling would make the SDK's adaptive retry slow the whole audit down.)
        moto._post("/_keywarden/faults", {"_unavailable": {"GetAccessKeyLastUsed": 0.3}})
        kw_port, prom_port, am_port = free_port(), free_port(), free_port()
        state = os.path.join(workdir, "state.json")
        state_with_old_findings(state, keys)
        config = os.path.join(workdir, "keywarden.toml")
        with open(config, "w") as f:
            f.write(f"""[schedule]
cron = "*/2 * * * * *"
[aws]
region = "us-east-1"
endpoint_url = "{moto.endpoint}"
[enforcement]
max_deactivations_per_run = 1
[state]
path = "{state}"
[metrics]
listen = "127.0.0.1:{kw_port}"
[owners]
tags = ["owner"]
default = "unowned"
[[owners.map]]
path_prefix = "/data/"
owner = "team-data"
[exemptions_from_tags]
enabled = true
""")
        servers.start("keywarden", [args.keywarden, "run", "--config", config], env=moto.env())
        with open(os.path.join(workdir, "alertmanager.yml"), "w") as f:
            yaml.safe_dump(alertmanager_config(hooks), f)
        servers.start("alertmanager", [
            "prometheus-alertmanager", f"--config.file={workdir}/alertmanager.yml",
            f"--storage.path={workdir}/am", f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ])
        with open(os.path.join(workdir, "prometheus.yml"), "w") as f:
            yaml.safe_dump({
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [RULES],
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
                "scrape_configs": [{"job_name": "keywarden",
                                    "static_configs": [{"targets": [f"127.0.0.1:{kw_port}"]}]}],
            }, f)
        servers.start("prometheus", [
            "prometheus", f"--config.file={workdir}/prometheus.yml", f"--storage.tsdb.path={workdir}/prom",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ])
        prom = f"http://127.0.0.1:{prom_port}"
        rules = wait_for("Prometheus to load the rules", lambda: (get_json(f"{prom}/api/v1/rules") or {})
                         .get("data", {}).get("groups"), 30)
        log(f"Prometheus loaded {sum(len(g['rules']) for g in rules)} rules from the shipped file")

        # 1. The 7-day warning reaches each owner's receiver, and only that one.
        expected = {"team-payments": {keys["pay-app"]}, "team-data": {keys["etl"], keys["etl-nightly"]},
                    "key-owners-unrouted": {keys["legacy"], keys["legacy-2"]}}
        for receiver, want in expected.items():
            got = wait_for(f"{receiver} to get KeywardenDeactivationIn7Days for {sorted(want)}",
                           lambda r=receiver, w=want: (lambda k: k if k >= w else None)(
                               hooks.keys(r, "KeywardenDeactivationIn7Days")), 60)
            log(f"{receiver} got KeywardenDeactivationIn7Days for {sorted(got)}")
        wait_for("KeywardenDeactivationDueSoon for etl-nightly at team-data",
                 lambda: keys["etl-nightly"] in hooks.keys("team-data", "KeywardenDeactivationDueSoon"), 30)
        log("team-data got KeywardenDeactivationDueSoon for etl-nightly (due in 12 h)")
        _, labels = hooks.alerts("team-payments", "KeywardenDeactivationIn7Days")[0]
        for label in ("owner", "account_id", "user", "access_key_id", "deadline"):
            expect(labels.get(label), f"the warning lacks the {label} label: {labels}")
        expect(labels["owner"] == "team-payments" and labels["user"] == "pay-app", f"labels: {labels}")
        log(f"labels: {labels}")

        # 2. Nobody got anything about the exempt key, or about another owner's keys.
        time.sleep(3)
        by_receiver = hooks.every_key()
        for receiver, got in by_receiver.items():
            expect(keys["exempt-job"] not in got, f"{receiver} was warned about the tag-exempt key")
            others = set().union(*(w for r, w in expected.items() if r != receiver))
            expect(not (got & others), f"{receiver} got other owners' keys: {sorted(got & others)}")
        expect(not hooks.alerts("platform", "KeywardenDeactivationIn7Days"), "owner warnings went to platform")
        log(f"no receiver got the exempt key or another owner's keys: {by_receiver}")

        # 3. Rotation: the old key goes, the alert resolves at the owner's receiver.
        iam = moto.iam()
        iam.create_access_key(UserName="pay-app")
        iam.delete_access_key(UserName="pay-app", AccessKeyId=keys["pay-app"])
        rotated = time.monotonic()
        wait_for("the resolved notification at team-payments",
                 lambda: keys["pay-app"] in hooks.keys("team-payments", "KeywardenDeactivationIn7Days", "resolved"), 90)
        log(f"rotated pay-app's key; resolved at team-payments after {time.monotonic() - rotated:.1f} s")

        # 4. An exposed key pages the security on-call and its owner, no one else.
        iam.attach_user_policy(UserName="pay-app",
                               PolicyArn="arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3")
        quarantined = time.monotonic()
        for receiver in ("security-oncall", "team-payments"):
            wait_for(f"KeywardenAccessKeyExposed at {receiver}",
                     lambda r=receiver: hooks.alerts(r, "KeywardenAccessKeyExposed"), 60)
        _, labels = hooks.alerts("team-payments", "KeywardenAccessKeyExposed")[0]
        expect(labels.get("owner") == "team-payments" and labels.get("severity") == "critical", f"labels: {labels}")
        for receiver in ("platform", "team-data", "key-owners-unrouted"):
            expect(not hooks.alerts(receiver, "KeywardenAccessKeyExposed"), f"{receiver} got the exposed key's page")
        log(f"quarantined pay-app: KeywardenAccessKeyExposed at security-oncall and team-payments after "
            f"{time.monotonic() - quarantined:.1f} s, nowhere else")

        # 5. The dashboard's queries, for real.
        check_dashboard(prom)
        ok = True
    except CheckFailed as e:
        print(f"\nFAILED: {e}", flush=True)
        for name in ("keywarden", "prometheus", "alertmanager"):
            print(f"---- {name} log (tail)\n{servers.log_tail(name)}")
        print(f"---- webhooks received: {json.dumps(hooks.received)[:3000]}")
    finally:
        servers.stop()
        hooks.stop()
        moto.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    log("alerting checks passed" if ok else "alerting checks FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
