"""scripts/credential-requests: IAM requests of a full and a steady daemon run, by inventory mode and credential rules."""

import concurrent.futures
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "moto"))
from harness import Moto  # noqa: E402

RULES = {
    "credential rules off": "[rules.unused_password]\nenabled = false\n",
    "defaults": "",
    "every credential rule on": "[rules.max_credential_age]\nenabled = true\n"
    "[rules.long_term_service_credential]\nenabled = true\n",
}

CERT = None


def certificate(d):
    """One self-signed certificate body (moto checks that it parses)."""
    key, cert = os.path.join(d, "k.pem"), os.path.join(d, "c.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=signing"], check=True, capture_output=True)
    with open(cert) as f:
        return f.read()


def seed(moto, n, cert):
    """Every user one access key; every 2nd console access; every 10th an SSH key; every 20th a
    CodeCommit credential and a signing certificate; every 50th a Bedrock API key. Half of it
    100 days old."""
    iam = moto.iam()

    def one(i):
        name = f"user-{i:05d}"
        iam.create_user(UserName=name)
        iam.create_access_key(UserName=name)
        if i % 2 == 0:
            iam.create_login_profile(UserName=name, Password="Correct-Horse-9!")
        if i % 10 == 0:
            iam.upload_ssh_public_key(UserName=name, SSHPublicKeyBody=f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeyOnly {name}")
        if i % 20 == 0:
            iam.create_service_specific_credential(UserName=name, ServiceName="codecommit.amazonaws.com")
            iam.upload_signing_certificate(UserName=name, CertificateBody=cert)
        if i % 50 == 0:
            iam.create_service_specific_credential(UserName=name, ServiceName="bedrock.amazonaws.com")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        moto.clock_days(-100)
        list(pool.map(one, range(0, n, 2)))
        moto.clock_days(0)
        list(pool.map(one, range(1, n, 2)))


def main():
    binary, n = sys.argv[1], int(sys.argv[2])
    moto = Moto()
    try:
        with tempfile.TemporaryDirectory() as d:
            seed(moto, n, certificate(d))
            print(f"{n} users: each 1 access key; 1 in 2 console access, 1 in 10 an SSH key, "
                  "1 in 20 a CodeCommit credential and a signing certificate, 1 in 50 a Bedrock API key\n")
            print(f"{'mode':18} {'rules':26} {'full':>6} {'/user':>6} {'steady':>7} {'/user':>6}  credential calls (full)")
            for mode in ("api", "credential-report"):
                for label, rules in RULES.items():
                    config = os.path.join(d, "k.toml")
                    state = os.path.join(d, "s.json")
                    with open(config, "w") as f:
                        f.write(f'[aws]\nregion = "us-east-1"\nendpoint_url = "{moto.endpoint}"\n'
                                f'inventory = "{mode}"\n[state]\npath = "{state}"\n{rules}')
                    if os.path.exists(state):
                        os.remove(state)
                    counts = []
                    # The first daemon run (no state) is a full refresh; the second, with the
                    # state the first saved, is a steady run between full refreshes.
                    for _ in range(2):
                        moto.take_stats()
                        proc = subprocess.run([binary, "run", "--once", "--config", config],
                                              env=moto.env(), capture_output=True)
                        if proc.returncode != 0:
                            sys.exit(f"keywarden run --once failed ({proc.returncode}): {proc.stderr.decode()}")
                        counts.append(moto.take_stats())
                    full, steady = (sum(c.values()) for c in counts)
                    extra = {k: v for k, v in sorted(counts[0].items())
                             if k in ("GetLoginProfile", "ListSSHPublicKeys", "ListServiceSpecificCredentials",
                                      "ListSigningCertificates")}
                    print(f"{mode:18} {label:26} {full:6d} {full / n:6.2f} {steady:7d} {steady / n:6.2f}  {extra or '-'}")
    finally:
        moto.stop()


if __name__ == "__main__":
    main()
