"""scripts/soak: the daemon, enforcing every few seconds, against moto with faults, for a while.

Seeds an account whose right end state is known, starts `keywarden run` with a 5-second cron,
turns on faults (throttling, 503s, slow answers past the attempt timeout, truncated bodies,
dropped connections) and samples the daemon's RSS and open file descriptors. At the end the
faults are cleared, the daemon is given time to converge, and the script checks:

- every key is in the state the rules call for: no exempt, kept or compliant key was ever
  deactivated, and every key due was deactivated (none deleted);
- every tick is accounted for: runs (success + failed) + skipped ~ elapsed / 5 s;
- RSS and open descriptors at the end are within bounds of the start (after warm-up).

Loopback only. Prints figures; exits 1 when a check fails.
"""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "moto"))
from harness import Moto  # noqa: E402

TICK = 5
# About 9% of requests fail one way or another; the SDK's backoff (up to 20 s) then stretches
# some runs past the next tick, which exercises skipping as well.
FAULTS = {
    "_throttle": {"*": 0.03},
    "_unavailable": {"*": 0.02},
    "_slow": {"*": [0.01, 2.0]},
    "_truncate": {"*": 0.015},
    "_drop": {"*": 0.015},
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(moto, groups):
    """pair-i: two fresh active keys (the older one is due: multiple_active_keys); exempt-i:
    the same, tagged exempt; ok-i: one fresh key; old-i: one key unused for 100 days (due)."""
    iam = moto.iam()
    expected = {}  # key id -> status at the end

    def key(name, days_ago):
        moto.clock_days(-days_ago)
        return iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"]

    for i in range(groups):
        for kind in ("pair", "exempt", "old", "ok"):
            name = f"{kind}-{i:03d}"
            iam.create_user(UserName=name)
            if kind == "old":
                expected[key(name, 100)] = "Inactive"
            elif kind == "ok":
                expected[key(name, 0)] = "Active"
            else:
                older, newer = key(name, 2), key(name, 1)
                expected[older] = "Inactive" if kind == "pair" else "Active"
                expected[newer] = "Active"
                if kind == "exempt":
                    iam.tag_user(UserName=name, Tags=[{"Key": "keywarden", "Value": "exempt"}])
    moto.clock_days(0)
    return expected


def proc_figures(pid):
    with open(f"/proc/{pid}/status") as f:
        rss_kib = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
    return rss_kib / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def total(page, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    s = 0.0
    for line in page.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            s += float(line.rsplit(" ", 1)[1])
    return s


def statuses(moto):
    iam = moto.iam()
    out = {}
    for page in iam.get_paginator("list_users").paginate():
        for u in page["Users"]:
            for k in iam.list_access_keys(UserName=u["UserName"])["AccessKeyMetadata"]:
                out[k["AccessKeyId"]] = k["Status"]
    return out


def main():
    binary, seconds, groups = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    moto = Moto()
    failures = []
    try:
        expected = seed(moto, groups)
        due = sum(1 for s in expected.values() if s == "Inactive")
        work = tempfile.mkdtemp(prefix="keywarden-soak-")
        port = free_port()
        config = os.path.join(work, "keywarden.toml")
        with open(config, "w") as f:
            f.write(f"""
[schedule]
cron = "*/{TICK} * * * * *"
run_on_start = true
[aws]
region = "us-east-1"
endpoint_url = "{moto.endpoint}"
max_attempts = 10
attempt_timeout = "1s"
[rules.max_key_age]
action = "report"
[enforcement]
mode = "enforce"
grace_period = "20s"
max_deactivations_per_run = 10
[state]
path = "{work}/state.json"
[metrics]
listen = "127.0.0.1:{port}"
[log]
format = "json"
[[exemptions]]
user_tag = "keywarden=exempt"
reason = "soak: exempt users"
""")
        env = moto.env()
        env.pop("AWS_ENDPOINT_URL", None)
        env["RUST_LOG"] = "info"
        log = open(os.path.join(work, "keywarden.log"), "w")
        daemon = subprocess.Popen([binary, "run", "--config", config], env=env, stdout=log, stderr=log)
        moto._post("/_keywarden/faults", FAULTS)
        start = time.monotonic()
        for _ in range(300):
            try:
                if "keywarden_audit_runs_total" in scrape(port):
                    break
            except OSError:
                pass
            time.sleep(0.2)
        time.sleep(30)  # warm-up: first runs, state file, connection pools
        rss0, fds0 = proc_figures(daemon.pid)
        t0 = time.monotonic()
        page0 = scrape(port)
        print(f"soak: {len(expected)} keys ({due} due), cron every {TICK} s, faults {json.dumps(FAULTS)}")
        print(f"start  t={t0 - start:6.0f} s  RSS {rss0:6.1f} MiB  fds {fds0}")
        next_sample = t0 + 60
        while time.monotonic() - t0 < seconds:
            time.sleep(1)
            if daemon.poll() is not None:
                failures.append(f"the daemon exited with {daemon.returncode}")
                break
            if time.monotonic() >= next_sample:
                rss, fds = proc_figures(daemon.pid)
                p = scrape(port)
                runs = total(p, "keywarden_audit_runs_total")
                print(f"sample t={time.monotonic() - start:6.0f} s  RSS {rss:6.1f} MiB  fds {fds}  runs {runs:.0f}  "
                      f"deactivated {total(p, 'keywarden_deactivations_total', outcome='success'):.0f}")
                next_sample += 60
        rss1, fds1 = proc_figures(daemon.pid)
        t1 = time.monotonic()
        page1 = scrape(port)
        print(f"end    t={t1 - start:6.0f} s  RSS {rss1:6.1f} MiB  fds {fds1}")

        def delta(name, **labels):
            return total(page1, name, **labels) - total(page0, name, **labels)

        runs = delta("keywarden_audit_runs_total")
        ok_runs = delta("keywarden_audit_runs_total", outcome="success")
        skipped = delta("keywarden_audit_skipped_total")
        ticks = (t1 - t0) / TICK
        print(f"runs {runs:.0f} ({ok_runs:.0f} complete, {runs - ok_runs:.0f} incomplete: failed closed), "
              f"skipped {skipped:.0f}, ticks ~{ticks:.0f}")
        attempts = {o: total(page1, "keywarden_iam_requests_total", outcome=o)
                    for o in ("success", "throttled", "client_error", "server_error", "transport_error")}
        print("IAM attempts: " + ", ".join(f"{k} {v:.0f}" for k, v in attempts.items()))
        print(f"deactivations: success {total(page1, 'keywarden_deactivations_total', outcome='success'):.0f}, "
              f"error {total(page1, 'keywarden_deactivations_total', outcome='error'):.0f}")
        if abs(runs + skipped - ticks) > 3:
            failures.append(f"runs + skipped = {runs + skipped:.0f}, but ~{ticks:.0f} ticks passed")
        if fds1 > fds0 + 8:
            failures.append(f"open descriptors grew from {fds0} to {fds1}")
        if rss1 > rss0 * 1.5 + 4:
            failures.append(f"RSS grew from {rss0:.1f} to {rss1:.1f} MiB")

        # Calm again: give the daemon time to finish what faults delayed, then compare.
        moto._post("/_keywarden/faults", {})
        time.sleep(45)
        daemon.terminate()
        daemon.wait(timeout=30)
        if daemon.returncode != 0:
            failures.append(f"SIGTERM exit code {daemon.returncode}")
        final = statuses(moto)
        wrong = {k: (final.get(k), want) for k, want in expected.items() if final.get(k) != want}
        missing = [k for k in expected if k not in final]
        print(f"keys: {len(final)} present of {len(expected)} seeded, {len(wrong)} in the wrong state")
        if missing:
            failures.append(f"{len(missing)} keys are gone (keys are never deleted)")
        for k, (got, want) in sorted(wrong.items()):
            failures.append(f"key {k}: {got}, expected {want}")
        state = json.load(open(os.path.join(work, "state.json")))
        print(f"state file: valid JSON, version {state.get('schema_version')}")
    finally:
        moto.stop()
    for f in failures:
        print("FAIL:", f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
