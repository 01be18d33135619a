"""A randomized campaign against a reference model (scripts/campaign; docs/campaign.md).

Each seed plays one sequence against the real binary and moto: users and keys of random ages,
exemptions, keywarden's own key, random caps; IAM changes between runs (keys created and
deleted, users tagged exempt); runs under injected faults (throttling, 5xx, slow answers past
the attempt timeout, truncated and dropped answers) and runs killed with SIGKILL at a random
point. After every step it checks what must hold whatever happened, and at the end, after
clean runs, that every due key was deactivated and the journal is IAM's changes. The same
seed plays the same sequence: a failure prints the seed that reproduces it.

Invariants (each breach printed with the seed and step):
  1. no key is deactivated that the model cannot make due (unused past 45 days, or a second
     active key of its user);
  2. an exempt key and keywarden's own key are never touched;
  3. no run deactivates more keys than its cap (journal entries per run id);
  4. the state stays readable (`keywarden audit` exits 0 or 3, never 1 for the state);
  5. after clean runs every key the model makes due (unused past 45 days, not exempt, not own)
     is inactive, within ceil(due / cap) + 1 runs;
  6. the journal equals IAM's changes: each key keywarden made inactive has exactly one
     `deactivate` success entry, and each such entry names a key IAM shows inactive (or one
     the campaign deleted).
"""

import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "moto"))
from harness import Moto  # noqa: E402

UNUSED_DAYS = 45
FAULTS = ["_throttle", "_unavailable", "_slow", "_truncate", "_drop"]


class Breach(Exception):
    pass


class Campaign:
    def __init__(self, binary, seed):
        self.binary = binary
        self.seed = seed
        self.rng = random.Random(seed)
        self.moto = Moto()
        self.iam = self.moto.iam()
        self.dir = tempfile.mkdtemp(prefix=f"keywarden-campaign-{seed}-")
        self.keys = {}  # key id -> {"user", "created_days_ago", "deleted"}
        self.exempt_users = set()
        self.counts = {"steps": 0, "runs": 0, "faulted_runs": 0, "kills": 0, "deleted": 0, "created": 0}
        self.cap = self.rng.randint(1, 3)
        self.users = [f"u{i}" for i in range(self.rng.randint(3, 7))]

    # --- IAM, as the campaign changes it --------------------------------------------------
    def create_key(self, user, days_ago):
        self.moto.clock_days(-days_ago)
        key = self.iam.create_access_key(UserName=user)["AccessKey"]
        self.moto.clock_days(0)
        self.keys[key["AccessKeyId"]] = {"user": user, "days": days_ago, "deleted": False, "secret": key["SecretAccessKey"]}
        self.counts["created"] += 1
        return key["AccessKeyId"]

    def status(self):
        out = {}
        for user in self.users + ["keywarden"]:
            for k in self.iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
                out[k["AccessKeyId"]] = k["Status"]
        return out

    def setup(self):
        self.iam.create_user(UserName="keywarden")
        self.own = self.create_key("keywarden", self.rng.choice([10, 100]))
        for u in self.users:
            self.iam.create_user(UserName=u)
            for _ in range(self.rng.randint(1, 2)):
                self.create_key(u, self.rng.choice([5, 30, 60, 120, 400]))
        self.exempt_users = {u for u in self.users if self.rng.random() < 0.25}
        exemptions = "".join(
            f'[[exemptions]]\nuser = "{u}"\nreason = "campaign exemption"\n' for u in sorted(self.exempt_users)
        )
        self.config = os.path.join(self.dir, "keywarden.toml")
        with open(self.config, "w") as f:
            f.write(
                f'[aws]\nregion = "us-east-1"\nendpoint_url = "{self.moto.endpoint}"\nmax_attempts = 2\n'
                f'max_concurrent_requests = 1\nattempt_timeout = "2s"\n'
                f'[state]\npath = "{self.dir}/state.json"\n'
                f'[enforcement]\nmode = "enforce"\ngrace_period = "0s"\nmax_deactivations_per_run = {self.cap}\n'
                f"[rules.unused_key]\nmax_unused = \"{UNUSED_DAYS}d\"\n{exemptions}"
            )

    # --- the model --------------------------------------------------------------------------
    def active_of(self, user):
        return [k for k, v in self.keys.items() if v["user"] == user and not v["deleted"] and self.last.get(k) == "Active"]

    def must_be_due(self, key):
        k = self.keys[key]
        return (not k["deleted"]) and k["user"] not in self.exempt_users and key != self.own and k["days"] > UNUSED_DAYS + 1

    # --- keywarden ------------------------------------------------------------------------
    def env(self):
        env = self.moto.env()
        env.update(AWS_ACCESS_KEY_ID=self.own, AWS_SECRET_ACCESS_KEY=self.keys[self.own]["secret"], RUST_LOG="warn")
        env.pop("AWS_ENDPOINT_URL", None)
        return env

    def run_once(self, kill_after=None):
        proc = subprocess.Popen(
            [self.binary, "run", "--once", "--config", self.config],
            env=self.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        if kill_after is not None:
            try:
                proc.wait(timeout=kill_after)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                self.counts["kills"] += 1
            proc.wait()
            return None
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise Breach("run --once did not finish within 120 s")
        return proc.returncode, err

    def journal(self):
        path = os.path.join(self.dir, "actions.jsonl")
        if not os.path.exists(path):
            return []
        out = []
        for line in open(path):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a line torn by SIGKILL: keywarden skips and reports it
        return out

    # --- the invariants -------------------------------------------------------------------
    def check(self, step):
        before = self.last
        now = self.status()
        for key, st in now.items():
            if before.get(key) == "Active" and st == "Inactive":
                k = self.keys[key]
                if k["user"] in self.exempt_users or key == self.own:
                    raise Breach(f"step {step}: exempt or own key {key} of {k['user']} deactivated")
                if not (k["days"] > UNUSED_DAYS or k.get("multiple")):
                    raise Breach(f"step {step}: {key} of {k['user']} deactivated, but no rule can make it due")
        per_run = {}
        for e in self.journal():
            if e.get("action") == "deactivate" and e.get("outcome") == "success":
                per_run[e["run_id"]] = per_run.get(e["run_id"], 0) + 1
        for run, n in per_run.items():
            if n > self.cap:
                raise Breach(f"step {step}: run {run} deactivated {n} keys, cap {self.cap}")
        code = subprocess.run(
            [self.binary, "audit", "--config", self.config, "--format", "json"],
            env=self.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        if code.returncode not in (0, 3) and "state" in code.stderr:
            raise Breach(f"step {step}: the state is not readable: {code.stderr.strip()}")
        self.last = now

    def mark_multiple(self):
        for user in self.users:
            active = self.active_of(user)
            if len(active) > 1:
                for k in active:
                    self.keys[k]["multiple"] = True

    def step(self, i):
        self.counts["steps"] += 1
        what = self.rng.choice(["run", "run", "faulted", "faulted", "kill", "kill", "create", "delete"])
        if what == "create":
            user = self.rng.choice(self.users)
            # IAM allows two keys a user, active or not.
            if len([k for k, v in self.keys.items() if v["user"] == user and not v["deleted"]]) < 2:
                key = self.create_key(user, self.rng.choice([1, 50, 200]))
                self.last[key] = "Active"
            self.mark_multiple()
            return
        if what == "delete":
            live = [k for k, v in self.keys.items() if not v["deleted"] and k != self.own]
            if live:
                key = self.rng.choice(live)
                self.iam.delete_access_key(UserName=self.keys[key]["user"], AccessKeyId=key)
                self.keys[key]["deleted"] = True
                self.last.pop(key, None)
                self.counts["deleted"] += 1
            return
        faults = {}
        if what in ("faulted", "kill"):
            kind = self.rng.choice(FAULTS)
            share = self.rng.choice([0.1, 0.3])
            faults = {kind: {"*": [share, 3.0] if kind == "_slow" else share}}
            self.counts["faulted_runs"] += 1
        self.moto._post("/_keywarden/faults", faults)
        self.counts["runs"] += 1
        self.mark_multiple()
        if what == "kill":
            self.run_once(kill_after=self.rng.uniform(0.05, 2.0))
        else:
            self.run_once()
        self.moto._post("/_keywarden/faults", {})
        self.check(i)

    def finish(self):
        """Clean runs until every due key is inactive (bounded by the cap), then the journal."""
        self.moto._post("/_keywarden/faults", {})
        due = [k for k in self.keys if self.must_be_due(k)]
        for _ in range(math.ceil(len(due) / self.cap) + 1):
            self.mark_multiple()
            self.counts["runs"] += 1
            self.run_once()
            self.check("final")
        now = self.status()
        late = [k for k in due if now.get(k) == "Active"]
        if late:
            raise Breach(f"due keys still active after clean runs: {late}")
        entries = [e for e in self.journal() if e.get("action") == "deactivate" and e.get("outcome") == "success"]
        journaled = {}
        for e in entries:
            journaled[e["access_key_id"]] = journaled.get(e["access_key_id"], 0) + 1
        twice = [k for k, n in journaled.items() if n > 1]
        if twice:
            raise Breach(f"keys journaled as deactivated more than once: {twice}")
        for k in journaled:
            if now.get(k) not in ("Inactive", None):
                raise Breach(f"{k} journaled as deactivated but IAM shows it {now.get(k)}")
        made_inactive = [k for k, st in now.items() if st == "Inactive"]
        missing = [k for k in made_inactive if k not in journaled]
        if missing:
            raise Breach(f"keys IAM shows inactive with no journal entry: {missing}")

    def play(self, steps):
        self.setup()
        self.last = self.status()
        self.mark_multiple()
        for i in range(steps):
            self.step(i)
        self.finish()


def main():
    binary = sys.argv[1]
    arg = sys.argv[2]
    seeds = [int(s) for s in arg.split(",") if s] if "," in arg else list(range(1, int(arg) + 1))
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    totals = {}
    breaches = []
    started = time.time()
    for seed in seeds:
        c = Campaign(binary, seed)
        try:
            c.play(steps)
        except Breach as b:
            breaches.append((seed, str(b)))
            print(f"seed {seed}: BREACH: {b} (state and journal in {c.dir})", flush=True)
        finally:
            c.moto.stop()
        for k, v in c.counts.items():
            totals[k] = totals.get(k, 0) + v
        print(f"seed {seed}: {c.counts}", flush=True)
    print(
        f"campaign: {len(seeds)} sequences, {totals.get('steps', 0)} steps, {totals.get('runs', 0)} runs, "
        f"{totals.get('faulted_runs', 0)} under faults, {totals.get('kills', 0)} killed, "
        f"{totals.get('created', 0)} keys created, {totals.get('deleted', 0)} deleted; "
        f"{len(breaches)} breaches; {time.time() - started:.0f} s"
    )
    sys.exit(1 if breaches else 0)


if __name__ == "__main__":
    main()
