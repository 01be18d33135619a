"""Seeds moto with sample users and runs keywarden audit against it (see scripts/demo)."""

import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "moto"))
from harness import Moto  # noqa: E402


def main():
    binary = sys.argv[1]
    moto = Moto()
    try:
        iam = moto.iam()
        for name, path in [("alice", "/"), ("bob", "/"), ("carol", "/"), ("deploy-bot", "/service/"),
                           ("break-glass-admin", "/")]:
            iam.create_user(UserName=name, Path=path)
        # alice: two active keys, the old one unused (multiple_active_keys + unused_key).
        moto.clock_days(-120)
        alice_old = iam.create_access_key(UserName="alice")["AccessKey"]
        bob = iam.create_access_key(UserName="bob")["AccessKey"]
        glass = iam.create_access_key(UserName="break-glass-admin")["AccessKey"]
        moto.clock_days(-60)
        iam.create_access_key(UserName="deploy-bot")
        moto.clock_days(-5)
        alice_new = iam.create_access_key(UserName="alice")["AccessKey"]
        moto.clock_days(0)
        # Used today: bob's key is only too old (max_key_age); alice keeps her new key.
        for k in (bob, alice_new, glass):
            moto.iam(k["AccessKeyId"], k["SecretAccessKey"]).get_user()
        carol = iam.create_access_key(UserName="carol")["AccessKey"]
        moto.iam(carol["AccessKeyId"], carol["SecretAccessKey"]).get_user()
        del alice_old

        with tempfile.TemporaryDirectory() as d:
            config = os.path.join(d, "keywarden.toml")
            with open(config, "w") as f:
                f.write(f"""[aws]
region = "us-east-1"
endpoint_url = "{moto.endpoint}"

[state]
path = "{d}/state.json"

[[exemptions]]
user = "break-glass-*"
rules = ["max_key_age"]
reason = "SEC-123 rotated by hand"
""")
            print(f"$ keywarden audit --config {config}\n", flush=True)
            code = subprocess.call([binary, "audit", "--config", config], env=moto.env())
            print(f"\n(exit code {code}: 0 no violation, 3 violations found, 1 error, 2 bad config)")
    finally:
        moto.stop()


if __name__ == "__main__":
    main()
