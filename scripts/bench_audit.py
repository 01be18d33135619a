"""scripts/bench-audit: keywarden audit vs a plain boto3 audit vs the AWS CLI procedure."""

import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "moto"))
from harness import Moto  # noqa: E402


def boto3_audit(endpoint):
    """The reference: what a careful Python script does, 8 threads, the same IAM calls."""
    import boto3

    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
    iam.get_account_summary()
    users = [u for page in iam.get_paginator("list_users").paginate() for u in page["Users"]]

    def one(user):
        keys = iam.list_access_keys(UserName=user["UserName"])["AccessKeyMetadata"]
        for k in keys:
            if k["Status"] == "Active":
                iam.get_access_key_last_used(AccessKeyId=k["AccessKeyId"])
        return len(keys)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        total = sum(pool.map(one, users))
    print(json.dumps({"users": len(users), "keys": total}))


def timed(cmd, env):
    """Wall seconds and peak RSS (MiB) of one child process.

    Through GNU time: a child forked from this Python process would carry Python's own peak
    RSS into its ru_maxrss across exec, so the measured process must be forked by something
    small.
    """
    with tempfile.NamedTemporaryFile("r") as rss_file:
        start = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-q", "-f", "%M", "-o", rss_file.name, *cmd],
                              env=env, capture_output=True)
        wall = time.perf_counter() - start
        rss_kib = int(rss_file.read().strip().splitlines()[-1])
    return wall, rss_kib / 1024, proc.returncode, proc.stdout, proc.stderr


def seed(moto, n):
    """0, 1 and 2 keys per user in turn; every 20th user's keys are 100 days old (findings),
    the rest were created today (compliant), as in an account that mostly follows the rules."""
    iam = moto.iam()

    def one(i):
        name = f"user-{i:05d}"
        iam.create_user(UserName=name)
        for _ in range(i % 3):
            iam.create_access_key(UserName=name)

    old = [i for i in range(n) if i % 20 == 0]
    rest = [i for i in range(n) if i % 20 != 0]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        moto.clock_days(-100)
        list(pool.map(one, old))
        moto.clock_days(0)
        list(pool.map(one, rest))


def main():
    binary, n = sys.argv[1], int(sys.argv[2])
    moto = Moto()
    try:
        t = time.perf_counter()
        seed(moto, n)
        print(f"seeded {n} users in {time.perf_counter() - t:.1f} s (keys per user: 0, 1, 2 in turn)")
        env = moto.env()
        rows = []

        with tempfile.TemporaryDirectory() as d:
            config = os.path.join(d, "k.toml")
            with open(config, "w") as f:
                f.write(f'[aws]\nregion = "us-east-1"\nendpoint_url = "{moto.endpoint}"\n[state]\npath = "{d}/s.json"\n')
            for mode in ("api", "credential-report"):
                moto.take_stats()
                mode_env = dict(env, KEYWARDEN_AWS__INVENTORY=mode)
                wall, rss, code, out, err = timed([binary, "audit", "--config", config, "--format", "json"], mode_env)
                if code not in (0, 3):
                    sys.exit(f"keywarden audit ({mode}) failed ({code}): {err.decode()}")
                users = json.loads(out)["summary"]["users"]
                rows.append((f"keywarden {mode}", wall, sum(moto.take_stats().values()), rss, users))

        wall, rss, code, out, err = timed([sys.executable, __file__, "--boto3", moto.endpoint], env)
        if code != 0:
            sys.exit(f"boto3 audit failed: {err.decode()}")
        rows.append(("boto3, 8 threads", wall, sum(moto.take_stats().values()), rss, json.loads(out)["users"]))

        cli_users = 50
        start = time.perf_counter()
        peak = 0.0
        for i in range(cli_users):
            name = f"user-{i:05d}"
            _, r, code, out, err = timed(["aws", "iam", "list-access-keys", "--user-name", name], env)
            peak = max(peak, r)
            if code != 0:
                sys.exit(f"aws cli failed: {err.decode()}")
            for k in json.loads(out)["AccessKeyMetadata"]:
                if k["Status"] == "Active":
                    _, r, _, _, _ = timed(["aws", "iam", "get-access-key-last-used", "--access-key-id", k["AccessKeyId"]], env)
                    peak = max(peak, r)
        rows.append(("aws cli procedure", time.perf_counter() - start, sum(moto.take_stats().values()), peak, cli_users))
    finally:
        moto.stop()

    print(f"\n{'':20} {'users':>6} {'wall s':>8} {'ms/user':>8} {'requests':>9} {'peak RSS MiB':>13}")
    for name, wall, reqs, rss, users in rows:
        print(f"{name:20} {users:6d} {wall:8.2f} {1000 * wall / users:8.2f} {reqs:9d} {rss:13.1f}")
    (_, kw, kw_req, kw_rss, kw_users), (_, cr, cr_req, cr_rss, _), (_, b3, b3_req, _, _), (_, cli, _, _, cli_n) = rows
    print(f"\nkeywarden api / boto3 wall time: {kw / b3:.2f}x (target <= 1.1x); requests {kw_req} vs {b3_req}")
    print(f"keywarden api / credential-report wall time: {kw / cr:.1f}x (target >= 2x); requests {kw_req} vs {cr_req}")
    print(f"aws cli / keywarden per user: {(cli / cli_n) / (kw / kw_users):.0f}x (target >= 100x)")
    print(f"keywarden peak RSS: api {kw_rss:.1f} MiB, credential-report {cr_rss:.1f} MiB (targets < 32 MiB at 1,000 users, < 64 MiB at 10,000)")


if __name__ == "__main__":
    if sys.argv[1] == "--boto3":
        boto3_audit(sys.argv[2])
    else:
        main()
