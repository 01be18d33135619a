"""scripts/bench-events: event sent -> finding on /metrics, against moto, one event at a time."""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "moto"))
from harness import Moto, free_port, metrics_page  # noqa: E402

IAM_OPS = ("GetUser", "ListAccessKeys", "GetAccessKeyLastUsed", "ListUserTags", "ListUsers",
           "GetAccountSummary", "UpdateAccessKey")


def active_keys(page, user):
    prefix = "keywarden_user_active_access_keys{"
    for line in page.splitlines():
        if line.startswith(prefix) and f'user="{user}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def main():
    binary, n = sys.argv[1], int(sys.argv[2])
    moto = Moto()
    import boto3

    kw = dict(region_name="us-east-1", endpoint_url=moto.endpoint, aws_access_key_id="seed",
              aws_secret_access_key="seed")
    iam, sqs, events = boto3.client("iam", **kw), boto3.client("sqs", **kw), boto3.client("events", **kw)
    daemon = None
    try:
        url = sqs.create_queue(QueueName="keywarden-events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="keys", State="ENABLED", EventPattern=json.dumps(
            {"source": ["aws.iam"], "detail-type": ["AWS API Call via CloudTrail"]}))
        events.put_targets(Rule="keys", Targets=[{"Id": "q", "Arn": arn}])
        users = [f"user-{i:04d}" for i in range(n)]
        for u in users:
            iam.create_user(UserName=u)
            iam.create_access_key(UserName=u)
        port = free_port()
        with tempfile.TemporaryDirectory() as d:
            cfg = os.path.join(d, "keywarden.toml")
            with open(cfg, "w") as f:
                f.write(f'[aws]\nregion = "us-east-1"\nendpoint_url = "{moto.endpoint}"\n'
                        f'[state]\npath = "{d}/state.json"\n[schedule]\ncron = "0 0 0 1 1 *"\n'
                        f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
                        f'[events]\nqueue_url = "{url}"\nendpoint_url = "{moto.endpoint}"\npoll_wait = "20s"\n')
            env = dict(moto.env(), AWS_ACCESS_KEY_ID="keywarden")
            daemon = subprocess.Popen([binary, "run", "--config", cfg], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.time() + 60
            while active_keys(metrics_page(port), users[-1]) != 1.0:
                if time.time() > deadline:
                    sys.exit("the first run did not finish")
                time.sleep(0.1)
            latencies, requests = [], {}
            for u in users:
                iam.create_access_key(UserName=u)
                moto.take_stats()
                detail = {"eventTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          "eventSource": "iam.amazonaws.com", "eventName": "CreateAccessKey",
                          "requestParameters": {"userName": u}, "recipientAccountId": "123456789012"}
                sent = time.perf_counter()
                events.put_events(Entries=[{"Source": "aws.iam", "DetailType": "AWS API Call via CloudTrail",
                                            "Detail": json.dumps(detail)}])
                while active_keys(metrics_page(port), u) != 2.0:
                    if time.perf_counter() - sent > 60:
                        sys.exit(f"the event for {u} was not seen within 60 s")
                    time.sleep(0.01)
                latencies.append(time.perf_counter() - sent)
                for op, count in moto.take_stats().items():
                    if op.split(":")[0] in IAM_OPS:
                        requests[op] = requests.get(op, 0) + count
    finally:
        if daemon:
            daemon.terminate()
            daemon.wait(timeout=10)
        moto.stop()

    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    per_event = {op: round(c / n, 2) for op, c in sorted(requests.items())}
    print(f"{n} events, one at a time (binary {binary})")
    print(f"event sent -> second key on /metrics: p50 {p(0.50):.3f} s, p99 {p(0.99):.3f} s, "
          f"max {latencies[-1]:.3f} s, mean {statistics.mean(latencies):.3f} s")
    print(f"IAM requests per event: {sum(requests.values()) / n:.2f} {json.dumps(per_event)}")
    print("cron only (default hourly schedule): seen at the next tick, 0 to 3600 s later, 1800 s on average")


if __name__ == "__main__":
    main()
