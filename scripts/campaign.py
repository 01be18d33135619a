"""A randomized campaign against a reference model (scripts/campaign; docs/campaign.md).

Each seed plays two sequences against the real binary and moto, both checked after every step
against the model of campaign_model.py: `Once` (below: `run --once` under faults, kills and
clock jumps) and `Fleet` (campaign_fleet.py: two daemons, events, SIGHUP, takeovers). The same
seed plays the same sequence: a failure prints the seed that reproduces it.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time
import traceback
import urllib.request

from campaign_fleet import Fleet
from campaign_model import FAKETIME, FAULTS, JUMPS, UNUSED_DAYS, Breach, Sequence


# A run's bound. Under 30% throttling the SDK's adaptive retry waits up to 20 s before a
# retry, one request at a time: such a run takes minutes (seed 14 drew one), and is not stuck.
RUN_BOUND = 600


class Once(Sequence):
    """`run --once` steps against a file state."""

    def setup(self):
        self.create_users()
        with open(self.config, "w") as f:
            f.write(
                f'[aws]\nregion = "us-east-1"\nendpoint_url = "{self.moto.endpoint}"\nmax_attempts = 2\n'
                f'max_concurrent_requests = 1\nattempt_timeout = "2s"\n'
                f'[state]\npath = "{self.dir}/state.json"\n'
                f'[enforcement]\nmode = "enforce"\ngrace_period = "0s"\nmax_deactivations_per_run = {self.cap}\n'
                f'[rules.unused_key]\nmax_unused = "{UNUSED_DAYS}d"\n'
                f"[exemptions_from_tags]\nenabled = true\n{self.exemptions_toml()}"
            )

    def run_once(self, kill_after=None, stall=False, jump=None):
        env = self.env()
        if jump:
            env.update(LD_PRELOAD=FAKETIME, FAKETIME=jump, FAKETIME_DONT_FAKE_MONOTONIC="1")
        # keywarden's log goes to a file: a pipe nobody reads while waiting could fill and stall it.
        with open(os.path.join(self.dir, "runs.log"), "a") as log:
            proc = subprocess.Popen(
                [self.binary, "run", "--once", "--config", self.config],
                env=env, stdout=subprocess.DEVNULL, stderr=log,
            )
        if stall:
            # Kill exactly while IAM has applied an UpdateAccessKey whose answer is held back.
            deadline = time.time() + 60
            while proc.poll() is None and time.time() < deadline:
                stats = json.loads(self.moto_get("/_keywarden/stats"))
                if stats.get("UpdateAccessKey:_stall"):
                    proc.send_signal(signal.SIGKILL)
                    self.count("kills_after_update")
                    break
                time.sleep(0.02)
            self.finished(proc)
            return
        if kill_after is not None:
            try:
                proc.wait(timeout=kill_after)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                self.count("kills")
        self.finished(proc)

    def finished(self, proc):
        try:
            proc.wait(timeout=RUN_BOUND)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise Breach(f"run --once did not finish within {RUN_BOUND} s")

    def moto_get(self, path):
        with urllib.request.urlopen(self.moto.endpoint + path) as r:
            return r.read()

    def step(self, i):
        self.count("steps")
        what = self.rng.choice(["run", "faulted", "faulted", "kill", "kill", "stall", "jump",
                                "create", "delete", "use", "tag", "untag"])
        changes = {"create": self.add_key, "delete": self.delete_key, "use": self.use_key,
                   "tag": self.tag_exempt, "untag": self.untag}
        if what in changes:
            changes[what]()
            return
        faults = {}
        if what in ("faulted", "kill"):
            kind = self.rng.choice(FAULTS)
            share = self.rng.choice([0.1, 0.3])
            faults = {kind: {"*": [share, 3.0] if kind == "_slow" else share}}
            self.count("faulted_runs")
        if what == "stall":
            faults = {"_stall": {"UpdateAccessKey": 10}}
        self.moto._post("/_keywarden/stats", {})
        self.moto._post("/_keywarden/faults", faults)
        self.count("runs")
        self.mark_multiple()
        due_before = self.must_go()
        jump = None
        if what == "kill":
            self.run_once(kill_after=self.rng.uniform(0.05, 2.0))
        elif what == "stall":
            self.run_once(stall=True)
        elif what == "jump":
            jump = self.rng.choice(JUMPS)
            self.count("clock_jumps")
            self.run_once(jump=jump)
        else:
            self.run_once()
        self.moto._post("/_keywarden/faults", {})
        self.check(i, clock_off=jump is not None)
        if what == "run":
            self.check_clean_run(i, due_before)

    def finish(self):
        """Clean runs until every due key is inactive (bounded by the cap), then the journal."""
        self.moto._post("/_keywarden/faults", {})
        due = self.due_now()
        for _ in range(math.ceil(len(due) / self.cap) + 2):
            self.mark_multiple()
            due_before = self.must_go()
            self.count("runs")
            self.run_once()
            self.check("final")
            self.check_clean_run("final", due_before)
        self.final_checks()

    def play(self, steps):
        self.setup()
        self.last = self.status()
        for i in range(steps):
            self.step(i)
        self.finish()


def main():
    if not os.path.exists(FAKETIME):
        sys.exit("campaign: libfaketime is missing (Debian package faketime): the clock jumps need it")
    binary = sys.argv[1]
    arg = sys.argv[2]
    seeds = [int(s) for s in arg.split(",") if s] if "," in arg else list(range(1, int(arg) + 1))
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    kinds = sys.argv[4].split(",") if len(sys.argv) > 4 else ["once", "fleet"]
    totals = {}
    breaches = []
    errors = []
    started = time.time()
    for seed in seeds:
        for kind, cls in (("once", Once), ("fleet", Fleet)):
            if kind not in kinds:
                continue
            c = cls(binary, seed)
            try:
                c.play(steps)
            except Breach as b:
                breaches.append((seed, kind, str(b)))
                print(f"seed {seed} {kind}: BREACH: {b} (state, journal and logs in {c.dir})", flush=True)
            except Exception as e:  # the campaign's own failure: no verdict, but never a pass
                errors.append((seed, kind))
                print(f"seed {seed} {kind}: ERROR in the campaign itself: {e!r} ({c.dir})", flush=True)
                traceback.print_exc()
            finally:
                c.stop()
            for k, v in c.counts.items():
                totals[k] = totals.get(k, 0) + v
            print(f"seed {seed} {kind}: {c.counts}", flush=True)
    print(f"campaign: {len(seeds)} seeds, {len(breaches)} breaches, {len(errors)} errors, "
          f"{time.time() - started:.0f} s; " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())))
    sys.exit(1 if breaches or errors else 0)


if __name__ == "__main__":
    main()
