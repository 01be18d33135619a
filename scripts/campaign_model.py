"""The campaign's model and invariants, shared by both sequences (scripts/campaign.py plays
them; docs/campaign.md).

IAM as the campaign changes it (users, keys created, used and deleted, exemption tags), the
model of what keywarden may and must do with it, and the invariants checked after every step
(each breach printed with the seed and step):
  1. no key is deactivated that the model cannot make due: unused past 45 days, or, at some
     run, made due by multiple_active_keys (not the kept key, not a used key waiting for the
     kept key to be used as recently);
  2. an exempt key (by the config or by keywarden:exempt-until tags) and keywarden's own key
     are never touched;
  3. no run deactivates more keys than its cap (journal entries per run id);
  4. a run whose clock is more than 5 minutes off deactivates nothing;
  5. the state and the journal stay readable;
  6. a clean run leaves no key the model makes due active but those its cap held back, and
     after the final clean runs every such key is inactive;
  7. the journal equals IAM's changes: each key keywarden made inactive has exactly one
     `deactivate` success entry, and each such entry names a key IAM shows inactive (or one
     the campaign deleted).
"""

import datetime
import glob
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "moto"))
from harness import Moto  # noqa: E402

UNUSED_DAYS = 45
MAX_AGE_DAYS = 90  # max_key_age (report only) still makes a key "bad" when choosing the kept one
ACCOUNT = "123456789012"
FAULTS = ["_throttle", "_unavailable", "_slow", "_truncate", "_drop"]
# Host clock jumps, each past the 5 minutes keywarden tolerates (libfaketime offsets).
JUMPS = ["+10m", "-10m", "+2h", "-1d", "+60d", "+400d"]
FAKETIME = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))), "libfaketime.so.1")
EXEMPT_UNTIL = "keywarden:exempt-until"
EXEMPT_REASON = "keywarden:exempt-reason"


class Breach(Exception):
    pass


class Sequence:
    """What both kinds of sequence share: IAM as the campaign changes it, the model, and the
    invariants checked after every step."""

    def __init__(self, binary, seed):
        self.binary = binary
        self.seed = seed
        self.rng = random.Random(seed)
        self.moto = Moto()
        self.iam = self.moto.iam()
        self.dir = tempfile.mkdtemp(prefix=f"keywarden-campaign-{seed}-")
        self.config = os.path.join(self.dir, "keywarden.toml")
        # key id -> {"user", "days", "created", "used_at", "deleted", "secret", "multiple"}
        self.keys = {}
        self.config_exempt = set()
        self.tagged = set()
        self.counts = {}
        self.cap = self.rng.randint(1, 3)
        self.users = [f"u{i}" for i in range(self.rng.randint(3, 7))]

    def stop(self):
        self.moto.stop()

    def count(self, what, n=1):
        self.counts[what] = self.counts.get(what, 0) + n

    # --- IAM, as the campaign changes it --------------------------------------------------
    def create_key(self, user, days_ago):
        self.moto.clock_days(-days_ago)
        key = self.iam.create_access_key(UserName=user)["AccessKey"]
        self.moto.clock_days(0)
        self.keys[key["AccessKeyId"]] = {
            "user": user, "days": days_ago, "created": time.time() - days_ago * 86400,
            "deleted": False, "secret": key["SecretAccessKey"],
        }
        self.count("created")
        return key["AccessKeyId"]

    def create_users(self):
        self.iam.create_user(UserName="keywarden")
        self.own = self.create_key("keywarden", self.rng.choice([10, 100]))
        for u in self.users:
            self.iam.create_user(UserName=u)
            for _ in range(self.rng.randint(1, 2)):
                self.create_key(u, self.rng.choice([5, 30, 60, 120, 400]))
        self.config_exempt = {u for u in self.users if self.rng.random() < 0.25}

    def live_keys_of(self, user):
        return [k for k, v in self.keys.items() if v["user"] == user and not v["deleted"]]

    def add_key(self):
        """A back-dated key for a user with fewer than two (IAM allows two, active or not)."""
        users = [u for u in self.users if len(self.live_keys_of(u)) < 2]
        if not users:
            return None
        user = self.rng.choice(users)
        key = self.create_key(user, self.rng.choice([1, 50, 200]))
        self.last[key] = "Active"
        return key

    def delete_key(self):
        live = [k for k, v in self.keys.items() if not v["deleted"] and k != self.own]
        if not live:
            return None
        key = self.rng.choice(live)
        self.iam.delete_access_key(UserName=self.keys[key]["user"], AccessKeyId=key)
        self.keys[key]["deleted"] = True
        self.last.pop(key, None)
        self.count("deleted")
        return key

    def use_key(self):
        """A call signed with an active key, back-dated 0, 10 or 50 days through the launcher's
        clock (never before its creation or its last use: IAM's last use only moves forward)."""
        active = [k for k in self.keys if not self.keys[k]["deleted"] and self.last.get(k) == "Active" and k != self.own]
        if not active:
            return None
        key = self.rng.choice(active)
        k = self.keys[key]
        days = self.rng.choice([d for d in (0, 10, 50) if d == 0 or d < self.idle_days(key)])
        self.moto.clock_days(-days)
        self.moto.iam(key, k["secret"]).list_users(MaxItems=1)
        self.moto.clock_days(0)
        k["used_at"] = time.time() - days * 86400
        self.count("used")
        return key

    def tag_exempt(self):
        """Tags a user exempt for 30 days: exempt from this moment on, in the model."""
        free = [u for u in self.users if u not in self.tagged]
        if not free:
            return None
        user = self.rng.choice(free)
        until = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)).strftime("%Y-%m-%d")
        self.iam.tag_user(UserName=user, Tags=[
            {"Key": EXEMPT_UNTIL, "Value": until}, {"Key": EXEMPT_REASON, "Value": "campaign tag"},
        ])
        self.tagged.add(user)
        self.count("tagged")
        return user

    def untag(self):
        """Removes a user's exemption tags: no longer exempt, in the model, once untagged."""
        if not self.tagged:
            return None
        user = self.rng.choice(sorted(self.tagged))
        self.iam.untag_user(UserName=user, TagKeys=[EXEMPT_UNTIL, EXEMPT_REASON])
        self.tagged.discard(user)
        self.count("untagged")
        return user

    def status(self):
        out = {}
        for user in self.users + ["keywarden"]:
            for k in self.iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
                out[k["AccessKeyId"]] = k["Status"]
        return out

    # --- the model --------------------------------------------------------------------------
    def exempt(self, user):
        return user in self.config_exempt or user in self.tagged

    def idle_days(self, key):
        k = self.keys[key]
        return (time.time() - (k.get("used_at") or k["created"])) / 86400

    def kept_of(self, active):
        """The key keywarden keeps of several active ones: first one that breaks no age or
        unused rule, then the most recent use (never used last), then the newest, then the id."""
        def rank(key):
            k = self.keys[key]
            bad = k["days"] > MAX_AGE_DAYS or self.idle_days(key) > UNUSED_DAYS
            return (bad, -(k.get("used_at") or -math.inf), -k["created"], key)

        return min(active, key=rank)

    def waits(self, key, kept):
        """A used key that multiple_active_keys would deactivate waits until the kept key has
        been used as recently (wait_for_kept_key, on by default)."""
        used, kept_used = self.keys[key].get("used_at"), self.keys[kept].get("used_at")
        return used is not None and (kept_used is None or kept_used < used)

    def surplus(self, user, status):
        """Of a non-exempt user's active keys, those multiple_active_keys makes due now."""
        if self.exempt(user):
            return []
        active = [k for k in self.live_keys_of(user) if status.get(k) == "Active"]
        if len(active) < 2:
            return []
        kept = self.kept_of(active)
        return [k for k in active if k != kept and not self.waits(k, kept)]

    def mark_multiple(self):
        """Before a run: the keys multiple_active_keys makes due may go from then on."""
        for user in self.users:
            for k in self.surplus(user, self.last):
                self.keys[k]["multiple"] = True

    def must_be_due(self, key):
        k = self.keys[key]
        return (not k["deleted"]) and not self.exempt(k["user"]) and key != self.own and self.idle_days(key) > UNUSED_DAYS + 1

    # --- keywarden ------------------------------------------------------------------------
    def env(self):
        env = self.moto.env()
        env.update(AWS_ACCESS_KEY_ID=self.own, AWS_SECRET_ACCESS_KEY=self.keys[self.own]["secret"], RUST_LOG="warn")
        env.pop("AWS_ENDPOINT_URL", None)
        return env

    def journal(self):
        out = subprocess.run(
            [self.binary, "history", "--config", self.config, "--format", "json"],
            env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        if out.returncode != 0:
            raise Breach(f"the journal is not readable: {out.stderr.strip()}")
        return json.loads(out.stdout or "[]")

    def deactivations(self):
        return [e for e in self.journal() if e.get("action") == "deactivate" and e.get("outcome") == "success"]

    # --- the invariants -------------------------------------------------------------------
    def check(self, step, clock_off=False):
        before = self.last
        now = self.status()
        for key, st in now.items():
            if before.get(key) == "Active" and st == "Inactive":
                k = self.keys[key]
                self.count("deactivated")
                if clock_off:
                    raise Breach(f"step {step}: {key} of {k['user']} deactivated by a run whose clock was off")
                if self.exempt(k["user"]) or key == self.own:
                    raise Breach(f"step {step}: exempt or own key {key} of {k['user']} deactivated")
                if not (self.idle_days(key) > UNUSED_DAYS or k.get("multiple")):
                    raise Breach(f"step {step}: {key} of {k['user']} deactivated, but no rule can make it due")
        per_run = {}
        for e in self.deactivations():
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

    def must_go(self):
        """Every key the model makes due now: unused ones and multiple_active_keys' surplus."""
        surplus = {k for u in self.users for k in self.surplus(u, self.last)}
        return {k for k in self.due_now() if self.last.get(k) == "Active"} | surplus

    def check_clean_run(self, step, due_before):
        """Invariant 6 run by run: with a grace period of 0, a clean run leaves no due key
        active but those its cap held back."""
        left = sorted(k for k in due_before if self.last.get(k) == "Active")
        if len(left) > max(0, len(due_before) - self.cap):
            raise Breach(f"step {step}: a clean run with cap {self.cap} left {len(left)} of "
                         f"{len(due_before)} due keys active: {left}")

    def due_now(self):
        return [k for k in self.keys if self.must_be_due(k)]

    def final_checks(self):
        """Invariants 6 and 7, once clean runs have had their chance."""
        now = self.status()
        late = [k for k in self.due_now() if now.get(k) == "Active"]
        if late:
            raise Breach(f"due keys still active after clean runs: {late}")
        for user in self.users:
            left = self.surplus(user, now)
            if left:
                raise Breach(f"{user} keeps a second active key multiple_active_keys makes due: {left}")
        journaled = {}
        for e in self.deactivations():
            journaled[e["access_key_id"]] = journaled.get(e["access_key_id"], 0) + 1
        twice = [k for k, n in journaled.items() if n > 1]
        if twice:
            raise Breach(f"keys journaled as deactivated more than once: {twice}")
        for k in journaled:
            if now.get(k) not in ("Inactive", None):
                raise Breach(f"{k} journaled as deactivated but IAM shows it {now.get(k)}")
        missing = [k for k, st in now.items() if st == "Inactive" and k not in journaled]
        if missing:
            raise Breach(f"keys IAM shows inactive with no journal entry: {missing}")

    def exemptions_toml(self):
        return "".join(
            f'[[exemptions]]\nuser = "{u}"\nreason = "campaign exemption"\n' for u in sorted(self.config_exempt)
        )


