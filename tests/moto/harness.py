"""Python side of the moto harness, for scripts/demo, the benchmarks and the campaign.

Starts tests/moto/launcher.py on a free loopback port and talks to its control endpoints.
"""

import json
import os
import socket
import subprocess
import sys
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


class Moto:
    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "launcher.py")],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"moto launcher did not start: {line!r}")
        self.port = int(line.split()[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def _post(self, path, body):
        req = urllib.request.Request(self.endpoint + path, data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read() or b"{}")

    def clock_days(self, days):
        self._post("/_keywarden/clock", {"offset_seconds": days * 86400})

    def take_stats(self):
        return self._post("/_keywarden/stats", {})

    def env(self):
        """Environment for any AWS client (boto3, the AWS CLI, keywarden) aimed at this moto."""
        env = dict(os.environ)
        env.update(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_REGION="us-east-1",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL=self.endpoint,
            AWS_EC2_METADATA_DISABLED="true",
        )
        return env

    def iam(self, key_id="testing", secret="testing"):
        import boto3

        return boto3.client(
            "iam",
            region_name="us-east-1",
            endpoint_url=self.endpoint,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
        )

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def free_port():
    """A loopback port free right now (for a keywarden's metrics listener)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics_page(port):
    """keywarden's /metrics page on `port`; "" while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return r.read().decode()
    except OSError:
        return ""
