"""The campaign's fleet sequence (run by scripts/campaign.py; docs/campaign.md): two daemons on one
DynamoDB table and one events queue.

Full runs come only when an instance starts (the cron is yearly until the end), so every other
run is an event run the campaign caused and waits for. Steps: events (genuine, duplicated,
reordered, forged: a user whose keys are fine, a user that does not exist, another account,
an exposure claim for a key that was not exposed), keys created and deleted with or without
their event, users tagged exempt and untagged with or without their event, an exemption added
or removed by SIGHUP to both instances, and the leader killed with SIGKILL (sometimes while it
handles events) and taken over. At the end a SIGHUP sets a cron of every 2 s and clean full
runs must reach every due key.
"""

import datetime
import json
import math
import os
import signal
import subprocess
import time
import uuid

import boto3
import botocore.exceptions

from campaign_model import ACCOUNT, FAULTS, UNUSED_DAYS, Breach, Sequence
from harness import free_port, metrics_page

YEARLY = "0 0 0 1 1 *"
EVERY_2S = "*/2 * * * * *"
SETTLE = 40  # seconds a step may take to settle before that is a breach


def metrics(port):
    """Every sample of the page summed by name (labels dropped); None when it does not answer."""
    page = metrics_page(port)
    if not page:
        return None
    out = {}
    for line in page.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        name = name.split("{", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            pass
    return out


def now_text(delta=datetime.timedelta(0)):
    return (datetime.datetime.now(datetime.timezone.utc) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


class Instance:
    def __init__(self, fleet, n):
        self.n = n
        self.port = free_port()
        self.log = os.path.join(fleet.dir, f"instance-{n}.log")
        env = fleet.env()
        env.update(KEYWARDEN_METRICS__LISTEN=f"127.0.0.1:{self.port}", RUST_LOG="info")
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [fleet.binary, "run", "--config", fleet.config], env=env,
                stdout=log, stderr=subprocess.STDOUT,
            )

    def metric(self, name):
        page = metrics(self.port)
        return None if page is None else page.get(name, 0.0)

    def alive(self):
        return self.proc.poll() is None


class Fleet(Sequence):
    def setup(self):
        self.create_users()
        self.sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=self.moto.endpoint,
                                aws_access_key_id="testing", aws_secret_access_key="testing")
        self.queue = self.sqs.create_queue(QueueName="keywarden-events",
                                           Attributes={"VisibilityTimeout": "3"})["QueueUrl"]
        self.write_config(YEARLY)
        init = subprocess.run([self.binary, "state", "init", "--config", self.config], env=self.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if init.returncode != 0:
            raise Breach(f"state init failed: {init.stdout}")
        self.last = self.status()
        self.mark_multiple()
        self.instances = [Instance(self, 0), Instance(self, 1)]
        self.serial = 2
        for i in self.instances:
            self.wait_started(i)
        self.leader_index = self.wait_leader()

    def write_config(self, cron):
        with open(self.config, "w") as f:
            f.write(
                f'[aws]\nregion = "us-east-1"\nendpoint_url = "{self.moto.endpoint}"\nmax_attempts = 2\n'
                f'[schedule]\ncron = "{cron}"\n'
                f'[state]\nbackend = "dynamodb"\npath = "{self.dir}/state.json"\n'
                f'[state.dynamodb]\ntable = "keywarden-campaign"\nlease_duration = "3s"\n'
                f'[events]\nqueue_url = "{self.queue}"\nendpoint_url = "{self.moto.endpoint}"\npoll_wait = "1s"\n'
                f'[enforcement]\nmode = "enforce"\ngrace_period = "0s"\nmax_deactivations_per_run = {self.cap}\n'
                f'[rules.unused_key]\nmax_unused = "{UNUSED_DAYS}d"\n'
                f"[exemptions_from_tags]\nenabled = true\n{self.exemptions_toml()}"
            )

    def tally(self, inst):
        """An instance's runs (full and event runs), read before it goes."""
        self.count("runs", int(inst.metric("keywarden_audit_runs_total") or 0))

    def stop(self):
        for i in getattr(self, "instances", []):
            if i.alive():
                self.tally(i)
                i.proc.send_signal(signal.SIGTERM)
        for i in getattr(self, "instances", []):
            try:
                i.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                i.proc.kill()
                i.proc.wait()
        self.moto.stop()

    # --- waiting for what proves a thing happened ---------------------------------------------
    def wait(self, what, cond, secs=SETTLE):
        deadline = time.time() + secs
        while time.time() < deadline:
            try:
                got = cond()
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                got = None  # the campaign's own read met an injected fault: ask again
            if got is not None and got is not False:
                return got
            time.sleep(0.1)
        raise Breach(f"{what} did not happen within {secs} s")

    def wait_started(self, inst):
        """The start run over, actions and state included (the page is published before the run
        acts; `keywarden_state_ok` is set once it has settled)."""
        self.wait(f"instance {inst.n}'s first full run", lambda: (inst.metric("keywarden_audit_runs_total") or 0) >= 1
                  and inst.metric("keywarden_state_ok") == 1)

    def wait_leader(self):
        def one():
            leaders = [n for n, i in enumerate(self.instances) if i.alive() and i.metric("keywarden_leader") == 1]
            return leaders[0] if len(leaders) == 1 else None

        return self.wait("one leader", one)

    def wait_settled(self):
        """Every message handled and deleted: the event runs they caused are over."""
        def empty():
            a = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]).get("Attributes")
            if not a:
                return None  # an answer cut or dropped by the injected fault: ask again
            return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"]) == 0

        self.wait("the queue drained", empty)

    # --- events ------------------------------------------------------------------------------
    def send(self, body):
        self.sqs.send_message(QueueUrl=self.queue, MessageBody=json.dumps(body))
        self.count("events")

    def trail(self, name, user, delta=datetime.timedelta(0), account=ACCOUNT):
        t = now_text(delta)
        return {"detail-type": "AWS API Call via CloudTrail", "source": "aws.iam", "account": account, "time": t,
                "detail": {"eventTime": t, "eventSource": "iam.amazonaws.com", "eventName": name,
                           "requestParameters": {"userName": user}, "recipientAccountId": account}}

    def health(self, key):
        return {"detail-type": "AWS Health Event", "source": "aws.health", "account": ACCOUNT, "time": now_text(),
                "detail": {"eventTypeCode": "AWS_RISK_CREDENTIALS_EXPOSED",
                           "affectedEntities": [{"entityValue": key}]}}

    def maybe_event(self, name, user):
        """The event of a change the campaign made; one in five is lost."""
        if user is not None and self.rng.random() < 0.8:
            self.send(self.trail(name, user))
        elif user is not None:
            self.count("events_lost")

    def events_step(self):
        kind = self.rng.choice(["genuine", "duplicated", "reordered", "forged"])
        user = self.rng.choice(self.users)
        if kind == "genuine":
            self.send(self.trail(self.rng.choice(["CreateAccessKey", "UpdateAccessKey", "TagUser"]), user))
        elif kind == "duplicated":
            body = self.trail("UpdateAccessKey", user)
            self.send(body)
            self.send(body)
            self.count("events_duplicated")
        elif kind == "reordered":
            self.send(self.trail("UpdateAccessKey", user))
            self.send(self.trail("CreateAccessKey", user, datetime.timedelta(hours=-2)))
            self.count("events_reordered")
        else:
            live = [k for k, v in self.keys.items() if not v["deleted"]]
            forged = self.rng.choice([
                self.trail("CreateAccessKey", "ghost-" + uuid.UUID(int=self.rng.getrandbits(128)).hex[:8]),
                self.trail("CreateAccessKey", user, account="999999999999"),
                self.health(self.rng.choice(live) if live else "AKIAFORGED0000000000"),
                self.trail("TagUser", user, datetime.timedelta(days=1)),
            ])
            self.send(forged)
            self.count("events_forged")

    # --- steps -------------------------------------------------------------------------------
    def sighup(self):
        """Adds or removes one user's exemption in the config; binding once both reloaded."""
        user = self.rng.choice(self.users)
        self.config_exempt ^= {user}
        self.write_config(YEARLY)
        self.reload_all()
        self.count("sighup_exemption_changes")

    def reload_all(self):
        sent = time.time()
        for i in self.instances:
            i.proc.send_signal(signal.SIGHUP)
        for i in self.instances:
            self.wait(f"instance {i.n}'s reload",
                      lambda: (i.metric("keywarden_config_last_reload_success_timestamp_seconds") or 0) >= sent)

    def takeover(self):
        """SIGKILLs the leader, sometimes while it handles events; the other must take over."""
        if self.rng.random() < 0.5:
            for _ in range(self.rng.randint(1, 3)):
                self.send(self.trail("UpdateAccessKey", self.rng.choice(self.users)))
            time.sleep(self.rng.uniform(0.0, 1.5))
        old = self.instances[self.leader_index]
        self.tally(old)
        old.proc.send_signal(signal.SIGKILL)
        old.proc.wait()
        self.count("leader_kills")
        self.leader_index = self.wait_leader()
        self.count("takeovers")
        self.instances[self.instances.index(old)] = fresh = Instance(self, self.serial)
        self.serial += 1
        self.wait_started(fresh)

    def step(self, i):
        self.count("steps")
        what = self.rng.choice(["events", "events", "create", "delete", "use", "tag", "untag", "sighup", "takeover"])
        self.mark_multiple()
        if what == "events":
            if self.rng.random() < 0.3:
                # The event run's reads and writes (IAM, DynamoDB, SQS) under a fault; a user
                # whose read fails keeps its messages for their next delivery.
                kind = self.rng.choice(FAULTS)
                self.moto._post("/_keywarden/faults", {kind: {"*": [0.1, 3.0] if kind == "_slow" else 0.1}})
                self.count("faulted_event_steps")
            self.events_step()
        elif what == "create":
            key = self.add_key()
            self.mark_multiple()
            self.maybe_event("CreateAccessKey", key and self.keys[key]["user"])
        elif what == "use":
            # No event: a call is not an IAM change. keywarden sees it at its next read of the
            # user, and its fresh read before acting.
            self.use_key()
        elif what == "delete":
            key = self.delete_key()
            self.maybe_event("DeleteAccessKey", key and self.keys[key]["user"])
        elif what == "tag":
            self.maybe_event("TagUser", self.tag_exempt())
        elif what == "untag":
            self.maybe_event("UntagUser", self.untag())
        elif what == "sighup":
            self.sighup()
        else:
            self.takeover()
        try:
            self.wait_settled()
        finally:
            self.moto._post("/_keywarden/faults", {})
        self.check(i)

    def finish(self):
        """A cron of every 2 s by SIGHUP; the leader's full runs must reach every due key."""
        self.mark_multiple()
        due = self.due_now()
        self.write_config(EVERY_2S)
        self.reload_all()
        leader = self.instances[self.wait_leader()]
        start = leader.metric("keywarden_audit_runs_total") or 0
        runs = math.ceil(len(due) / self.cap) + 2
        self.wait(f"{runs} full runs of the leader",
                  lambda: (leader.metric("keywarden_audit_runs_total") or 0) >= start + runs, secs=SETTLE + 2 * runs)
        self.check("final")
        self.final_checks()

    def play(self, steps):
        self.setup()
        self.check("start")
        for i in range(steps):
            self.step(i)
        self.finish()
