"""scripts/bench-state: the file store vs the DynamoDB table, same accounts, same run."""

import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "moto"))
from harness import Moto  # noqa: E402

TABLE_OPS = ("Query", "GetItem", "PutItem", "UpdateItem", "TransactWriteItems", "TransactGetItems",
             "BatchWriteItem", "CreateTable", "DescribeTable", "DescribeTimeToLive", "UpdateTimeToLive")


def seed(moto, n):
    iam = moto.iam()

    def one(i):
        name = f"user-{i:05d}"
        iam.create_user(UserName=name)
        iam.create_access_key(UserName=name)

    moto.clock_days(-100)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(n)))
    moto.clock_days(0)


def run_once(binary, config, env):
    start = time.perf_counter()
    proc = subprocess.run([binary, "run", "--once", "--config", config], env=env, capture_output=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"keywarden run --once failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return wall


def main():
    binary, n = sys.argv[1], int(sys.argv[2])
    moto = Moto()
    try:
        t = time.perf_counter()
        seed(moto, n)
        print(f"seeded {n} users with one 100-day-old unused key each in {time.perf_counter() - t:.1f} s")
        env = dict(moto.env(), KEYWARDEN_AWS__INVENTORY="api")
        rows = []
        with tempfile.TemporaryDirectory() as d:
            common = (f'[aws]\nregion = "us-east-1"\nendpoint_url = "{moto.endpoint}"\n'
                      f'[enforcement]\nmode = "dry-run"\ngrace_period = "30d"\n[metrics]\nper_key = false\n')
            file_cfg = os.path.join(d, "file.toml")
            with open(file_cfg, "w") as f:
                f.write(common + f'[state]\npath = "{d}/state.json"\n')
            table_cfg = os.path.join(d, "table.toml")
            with open(table_cfg, "w") as f:
                f.write(common + f'[state]\nbackend = "dynamodb"\npath = "{d}/unused.json"\n'
                        '[state.dynamodb]\ntable = "keywarden-bench"\n')
            subprocess.run([binary, "state", "init", "--config", table_cfg], env=env, check=True,
                           capture_output=True)
            # Interleaved, so that both stores see the same moto and machine state.
            for label in ("first run", "unchanged run"):
                for store, cfg in (("file", file_cfg), ("dynamodb", table_cfg)):
                    moto.take_stats()
                    wall = run_once(binary, cfg, env)
                    stats = moto.take_stats()
                    table = {k: v for k, v in stats.items() if k.split(":")[0] in TABLE_OPS}
                    iam = sum(v for k, v in stats.items() if k.split(":")[0] not in TABLE_OPS)
                    rows.append((label, store, wall, iam, table))
            findings = json.load(open(os.path.join(d, "state.json")))["findings"]
    finally:
        moto.stop()

    print(f"\npending findings in the state: {len(findings)}")
    print(f"{'':14} {'store':9} {'wall s':>7} {'IAM req':>8} {'table req':>10}  by operation")
    for label, store, wall, iam, table in rows:
        print(f"{label:14} {store:9} {wall:7.2f} {iam:8d} {sum(table.values()):10d}  {json.dumps(table, sort_keys=True)}")
    for label in ("first run", "unchanged run"):
        file_wall = next(r[2] for r in rows if r[0] == label and r[1] == "file")
        table_wall = next(r[2] for r in rows if r[0] == label and r[1] == "dynamodb")
        print(f"{label}: table overhead {100 * (table_wall - file_wall) / file_wall:+.1f}% of the file store's run "
              f"(target < 20%)")
    unchanged = next(r[4] for r in rows if r[0] == "unchanged run" and r[1] == "dynamodb")
    print(f"unchanged run: {unchanged.get('Query', 0)} Query (one paged read), "
          f"{unchanged.get('TransactWriteItems', 0)} TransactWriteItems (last_run only: target 1)")


if __name__ == "__main__":
    main()
