"""scripts/bench-usage: a 90-day backfill of one key, and ingestion from the usage queue."""

import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "moto"))
from harness import Moto, free_port, metrics_page  # noqa: E402

AGENT = ("aws-cli/2.17.46 md/awscrt#0.21.2 ua/2.0 os/linux#6.5.0 md/arch#x86_64 lang/python#3.11.10 "
         "md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe md/prompt#off md/command#s3.cp")


def record(i, key, when):
    return {
        "eventVersion": "1.09", "eventID": f"bench-{key}-{i}",
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "eventSource": "s3.amazonaws.com",
        "eventName": ["GetObject", "PutObject", "ListBuckets"][i % 3], "awsRegion": "us-east-1",
        "sourceIPAddress": f"198.51.100.{i % 5}", "userAgent": AGENT, "readOnly": True,
        "recipientAccountId": "123456789012",
        "userIdentity": {"type": "IAMUser", "userName": "bench", "accessKeyId": key},
    }


def post(moto, path, body):
    req = urllib.request.Request(moto.endpoint + path, data=json.dumps(body).encode(), method="POST")
    return json.loads(urllib.request.urlopen(req).read() or b"{}")


def config(d, moto, extra):
    path = os.path.join(d, "k.toml")
    with open(path, "w") as f:
        f.write(f'[aws]\nregion = "us-east-1"\nendpoint_url = "{moto.endpoint}"\n'
                f'[state]\npath = "{d}/state.json"\n{extra}')
    return path


def backfill(binary, n):
    moto = Moto()
    try:
        iam = moto.iam()
        iam.create_user(UserName="bench")
        key = iam.create_access_key(UserName="bench")["AccessKey"]["AccessKeyId"]
        now = datetime.datetime.now(datetime.timezone.utc)
        span = datetime.timedelta(days=89)
        records = [record(i, key, now - span * i / n) for i in range(n)]
        for chunk in range(0, n, 1000):
            post(moto, "/_keywarden/cloudtrail", {"records": records[chunk:chunk + 1000]})
        with tempfile.TemporaryDirectory() as d:
            cfg = config(d, moto, f'[usage]\ncloudtrail_endpoint_url = "{moto.endpoint}"\n')
            moto.take_stats()
            started = time.monotonic()
            p = subprocess.run([binary, "usage", "--backfill", "--format", "json", "--config", cfg],
                               env=moto.env(), capture_output=True, text=True)
            wall = time.monotonic() - started
            if p.returncode != 0:
                sys.exit(f"usage --backfill failed: {p.stderr}")
            stats = moto.take_stats()
            profile = json.loads(p.stdout)[0]
            print(f"backfill of one key, {n} events over 89 days: "
                  f"{stats.get('LookupEvents', 0)} LookupEvents requests "
                  f"({stats.get('LookupEvents:ThrottlingException', 0)} throttled), {wall:.1f} s wall, "
                  f"{profile['events_total']} events counted, backfill {profile['backfill']}")
            print(f"  usage.json: {os.path.getsize(os.path.join(d, 'usage.json'))} bytes for one profile")
    finally:
        moto.stop()


def counted(port):
    page = metrics_page(port)
    total = 0.0
    for line in page.splitlines():
        if line.startswith("keywarden_usage_events_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def ingest(binary, n):
    moto = Moto()
    import boto3

    kw = dict(region_name="us-east-1", endpoint_url=moto.endpoint, aws_access_key_id="seed",
              aws_secret_access_key="seed")
    iam, sqs, events = boto3.client("iam", **kw), boto3.client("sqs", **kw), boto3.client("events", **kw)
    daemon = None
    try:
        url = sqs.create_queue(QueueName="keywarden-usage")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="usage", State="ENABLED", EventPattern=json.dumps(
            {"detail-type": ["AWS API Call via CloudTrail"],
             "detail": {"userIdentity": {"accessKeyId": [{"prefix": "AKIA"}]}}}))
        events.put_targets(Rule="usage", Targets=[{"Id": "q", "Arn": arn}])
        keys = []
        for u in range(10):
            iam.create_user(UserName=f"bench-{u}")
            keys.append(iam.create_access_key(UserName=f"bench-{u}")["AccessKey"]["AccessKeyId"])
        with tempfile.TemporaryDirectory() as d:
            port = free_port()
            cfg = config(d, moto, f'[schedule]\ncron = "0 0 0 1 1 *"\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
                                  f'[usage]\nenabled = true\nqueue_url = "{url}"\nendpoint_url = "{moto.endpoint}"\n')
            now = datetime.datetime.now(datetime.timezone.utc)
            entries = [{"Source": "aws.s3", "DetailType": "AWS API Call via CloudTrail",
                        "Detail": json.dumps(record(i, keys[i % len(keys)], now))} for i in range(n)]
            moto.take_stats()
            started = time.monotonic()
            for chunk in range(0, n, 10):
                events.put_events(Entries=entries[chunk:chunk + 10])
            sent = time.monotonic() - started
            # The queue is full before keywarden starts: what follows its first run is its
            # own draining (SQS through moto), not moto's EventBridge.
            daemon = subprocess.Popen([binary, "run", "--config", cfg], env=moto.env(),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 60
            while b'keywarden_audit_runs_total{outcome="success"} 1' not in (urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/metrics").read() if _up(port) else b""):
                if time.monotonic() > deadline:
                    sys.exit("the daemon did not finish its first run")
                time.sleep(0.2)
            drained = time.monotonic()
            while counted(port) < n:
                if time.monotonic() - drained > 600:
                    sys.exit(f"only {counted(port)} of {n} counted in 600 s")
                time.sleep(0.05)
            wall = time.monotonic() - drained
            # One usage.json write per batch, then one DeleteMessageBatch: the deletes count the writes.
            writes = moto.take_stats().get("DeleteMessageBatch", 0)
            print(f"ingestion of {n} usage events (10 keys): sent through moto's EventBridge in {sent:.1f} s "
                  f"({n / sent:.0f}/s), drained by keywarden from SQS in {wall:.1f} s after its first run: "
                  f"{n / wall:.0f} events/s (moto's SQS bounds it; the core alone: cargo bench --bench usage_profile)")
            print(f"  usage.json writes: {writes} ({writes / n:.2f} per event)")
    finally:
        if daemon:
            daemon.terminate()
            daemon.wait()
        moto.stop()


def _up(port):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/-/healthy", timeout=1)
        return True
    except OSError:
        return False


def main():
    binary, backfill_events, ingest_events = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    backfill(binary, backfill_events)
    ingest(binary, ingest_events)


if __name__ == "__main__":
    main()
