"""The .deb under a booted systemd (see scripts/check-systemd, which prepares the rootfs).

Boots an overlay of a minimal Debian with `systemd-nspawn -b` in a cgroup of its own, sharing
this host's network (so the service reaches moto on 127.0.0.1 and the checks reach its
listener), installs the package with dpkg and checks, through systemctl and journalctl inside:

 1. `systemctl start`: Type=notify, active once READY=1 is sent (the listener answers the moment
    start returns), the status text;
 2. a due key is deactivated after its grace period, and `journalctl -u keywarden
    ACCESS_KEY_ID=<key> -o json` returns that event with the field names of docs/names.md;
 3. `systemctl reload`: a valid config reloads in the same process (no /bin/kill on a minbase
    system); an invalid one is refused by the unit's check-config and the daemon keeps its config;
 4. the watchdog: a stopped (SIGSTOP) process is killed and restarted by systemd;
 5. `systemctl stop`: a clean exit within 10 s; owners and modes of the config and the state;
    `systemd-analyze security` inside: exposure <= 2.5;
 6. an upgrade (`dpkg -i` of a higher version while the service runs) restarts it and keeps the
    config and the state; `dpkg --purge` removes them.

Then it powers the container off and checks that no mount, cgroup or process is left behind.
Every failure names the check; the container's console and journal are printed with it.
"""

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "moto"))
from harness import Moto  # noqa: E402
from checks import CheckFailed, expect, free_port, wait_for  # noqa: E402

CGROUP_ROOTS = ["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"]
INSIDE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "SYSTEMD_PAGER": "", "TERM": "dumb"}
CONFIG = "/etc/keywarden/keywarden.toml"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def http_get(url, timeout=5):
    """(status, body), or (None, error text) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return None, str(e)


def metric(page, name):
    for line in page.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


class Container:
    """A booted overlay of the base rootfs, in its own cgroups; `close` leaves nothing behind."""

    def __init__(self, rootfs, workdir):
        self.name = f"kw-systemd-{os.getpid()}"
        self.dir = workdir
        self.merged = os.path.join(workdir, "merged")
        for d in ("upper", "work", "merged"):
            os.makedirs(os.path.join(workdir, d))
        opts = f"lowerdir={rootfs},upperdir={workdir}/upper,workdir={workdir}/work"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, self.merged], check=True)
        self.mounted = True
        self.cgroups = []
        self.nspawn = None
        self.pid1 = None
        self.console = os.path.join(workdir, "console.log")

    def path(self, p):
        return os.path.join(self.merged, p.lstrip("/"))

    def chroot(self, *args):
        subprocess.run(["chroot", self.merged, *args], check=True, stdin=subprocess.DEVNULL,
                       env=INSIDE_ENV | {"DEBIAN_FRONTEND": "noninteractive"})

    def boot(self):
        for root in CGROUP_ROOTS:
            d = os.path.join(root, self.name)
            os.makedirs(d)
            self.cgroups.append(d)
        # nspawn (with --keep-unit and no machined) makes payload/ and supervisor/ in the
        # cgroup it starts in: give it one of its own rather than the host's root.
        enter = " ".join(f"echo $$ > {d}/cgroup.procs &&" for d in self.cgroups)
        cmd = (f"{enter} exec systemd-nspawn -D {self.merged} -b -M {self.name} "
               "--register=no --keep-unit --console=passive")
        self.nspawn = subprocess.Popen(["sh", "-c", cmd], stdin=subprocess.DEVNULL,
                                       stdout=open(self.console, "w"), stderr=subprocess.STDOUT)

        def pid1():
            if self.nspawn.poll() is not None:
                raise CheckFailed(f"systemd-nspawn exited with {self.nspawn.returncode}")
            r = subprocess.run(["pgrep", "-P", str(self.nspawn.pid), "-x", "systemd"],
                               capture_output=True, text=True)
            return r.stdout.split()[0] if r.stdout.split() else None

        started = time.monotonic()
        self.pid1 = wait_for("the container's systemd", pid1, 30)

        # Right after PID 1 appears its bus may not be up yet: systemctl then fails at once
        # (even with --wait), so poll until it answers with a final state.
        def booted():
            r = self.run("systemctl", "is-system-running", check=False, timeout=10)
            self.boot_state = (r.stdout + r.stderr).strip()
            return r.stdout.strip() if r.stdout.strip() in ("running", "degraded") else None

        self.boot_state = ""
        try:
            state = wait_for("the container to finish booting", booted, 60)
        except CheckFailed:
            raise CheckFailed(f"the container did not boot: {self.boot_state!r}")
        log(f"booted ({state}) in {time.monotonic() - started:.1f} s")

    def run(self, *args, check=True, timeout=60, env=None):
        r = subprocess.run(["nsenter", "-t", self.pid1, "-a", *args], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=timeout, env=INSIDE_ENV | (env or {}))
        if check and r.returncode != 0:
            raise CheckFailed(f"inside: {' '.join(args)} exited {r.returncode}: {r.stdout}{r.stderr}")
        return r

    def show(self, unit, *props):
        out = self.run("systemctl", "show", unit, "-p", ",".join(props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def close(self):
        if self.nspawn is not None and self.nspawn.poll() is None:
            if self.pid1:
                self.run("systemctl", "poweroff", check=False, timeout=10)
            try:
                self.nspawn.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.nspawn.send_signal(signal.SIGTERM)
                try:
                    self.nspawn.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.nspawn.kill()
                    self.nspawn.wait()
        for d in self.cgroups:
            kill_cgroup(d)
        for d in self.cgroups:
            remove_cgroup(d)
        if self.mounted:
            subprocess.run(["umount", self.merged], check=False)
            self.mounted = False

    def leftovers(self):
        """What `close` failed to remove (empty when clean)."""
        left = [d for d in self.cgroups if os.path.exists(d)]
        with open("/proc/self/mountinfo") as f:
            left += [line.split()[4] for line in f if self.dir in line]
        if self.nspawn is not None and self.nspawn.poll() is None:
            left.append(f"systemd-nspawn pid {self.nspawn.pid}")
        return left


def cgroup_pids(d):
    pids = []
    for root, _, files in os.walk(d):
        if "cgroup.procs" in files:
            with open(os.path.join(root, "cgroup.procs")) as f:
                pids += [int(p) for p in f.read().split()]
    return pids


def kill_cgroup(d):
    for _ in range(50):
        pids = cgroup_pids(d) if os.path.exists(d) else []
        if not pids:
            return
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def remove_cgroup(d):
    if not os.path.exists(d):
        return
    for root, _, _ in sorted(os.walk(d, topdown=False), key=lambda w: -len(w[0])):
        try:
            os.rmdir(root)
        except OSError as e:
            log(f"cannot remove cgroup {root}: {e}")


def seed(moto):
    """`idle`: a key unused for 60 days (unused_key, deactivated after the grace period).
    `rotating`: a rotation in progress (the old key, 100 days old, still in use; the new one not
    yet): the old key's deactivation is held, so its finding stays in the state across the
    upgrade."""
    iam = moto.iam()
    for name in ("idle", "rotating"):
        iam.create_user(UserName=name)
    moto.clock_days(-100)
    old = iam.create_access_key(UserName="rotating")["AccessKey"]
    moto.clock_days(-60)
    idle = iam.create_access_key(UserName="idle")["AccessKey"]
    moto.clock_days(0)
    moto.iam(old["AccessKeyId"], old["SecretAccessKey"]).get_user()
    new = iam.create_access_key(UserName="rotating")["AccessKey"]
    return idle["AccessKeyId"], old["AccessKeyId"], new["AccessKeyId"]


def config_text(moto, port, extra=""):
    return f"""# written by scripts/check_systemd.py
[schedule]
cron = "*/2 * * * * *"

[aws]
region = "us-east-1"
endpoint_url = "{moto.endpoint}"
max_attempts = 2

[enforcement]
mode = "enforce"
grace_period = "4s"

[metrics]
listen = "127.0.0.1:{port}"
{extra}"""


def write_keeping_mode(path, text):
    """Rewrites a file in place, so it keeps the owner and mode the package gave it."""
    with open(path, "w") as f:
        f.write(text)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def check_start(c, base):
    expect(c.show("keywarden", "ActiveState")["ActiveState"] == "inactive",
           "installing the package must not start the service")
    c.run("systemctl", "start", "keywarden", timeout=60)
    # Type=notify: start returns once READY=1 arrived, which the daemon sends after binding.
    status, body = http_get(base + "/-/healthy")
    expect(status == 200, f"/-/healthy right after `systemctl start` returned: {status} {body}")
    props = c.show("keywarden", "Type", "ActiveState", "SubState", "StatusText", "MainPID", "NRestarts")
    log(f"started: {props}")
    expect(props["Type"] == "notify", f"Type: {props['Type']}")
    expect((props["ActiveState"], props["SubState"]) == ("active", "running"), f"state: {props}")
    expect(props["StatusText"] != "", "no status text (STATUS=) from the daemon")
    journal = c.run("journalctl", "-u", "keywarden", "--no-pager").stdout
    # Without the system's CA roots every HTTPS call to AWS fails (moto here is plain HTTP).
    expect("root CA certificates" not in journal, f"the TLS client found no CA roots:\n{journal}")
    return props["MainPID"]


def check_enforcement(c, moto, idle_key, rotating_old):
    def inactive():
        keys = moto.iam().list_access_keys(UserName="idle")["AccessKeyMetadata"]
        return [k for k in keys if k["AccessKeyId"] == idle_key and k["Status"] == "Inactive"]

    wait_for(f"the service to deactivate {idle_key}", inactive, 60)
    log(f"{idle_key} deactivated by the service")
    keys = moto.iam().list_access_keys(UserName="rotating")["AccessKeyMetadata"]
    expect(all(k["Status"] == "Active" for k in keys), f"the held rotation was touched: {keys}")

    def event():
        out = c.run("journalctl", "-u", "keywarden", f"ACCESS_KEY_ID={idle_key}", "-o", "json",
                    "--no-pager").stdout
        entries = [json.loads(line) for line in out.splitlines() if line.strip()]
        return [e for e in entries if e.get("OUTCOME") == "success"]

    entry = wait_for(f"journal entries with ACCESS_KEY_ID={idle_key}", event, 10)[0]
    want = {"ACCOUNT_ID": "123456789012", "USER": "idle", "ACCESS_KEY_ID": idle_key,
            "RULE": "unused_key", "OUTCOME": "success", "MODE": "enforce"}
    got = {k: entry.get(k) for k in want}
    expect(got == want, f"journal fields: want {want}, got {got} (entry: {entry})")
    expect(not any(k.startswith("F_") for k in entry), f"prefixed journal fields: {sorted(entry)}")
    expect(entry.get("_SYSTEMD_UNIT") == "keywarden.service", f"unit: {entry.get('_SYSTEMD_UNIT')}")
    log(f"journal: {entry.get('MESSAGE')!r} with {got}")
    held = c.run("journalctl", "-u", "keywarden", f"ACCESS_KEY_ID={rotating_old}", "-o", "json",
                 "--no-pager").stdout
    expect(rotating_old in held, f"no journal entry for the held key {rotating_old}")


def check_reload(c, moto, port, base, pid):
    write_keeping_mode(c.path(CONFIG), config_text(moto, port, '\n[log]\nlevel = "debug"\n'))
    r = c.run("systemctl", "reload", "keywarden", check=False)
    expect(r.returncode == 0, f"`systemctl reload` with a valid config failed: {r.stderr}"
           f"{c.run('systemctl', 'status', 'keywarden', '--no-pager', check=False).stdout}")
    props = c.show("keywarden", "MainPID", "ActiveState", "SubState")
    expect(props["MainPID"] == pid, f"reload replaced the process: {pid} -> {props['MainPID']}")
    expect((props["ActiveState"], props["SubState"]) == ("active", "running"), f"after reload: {props}")
    page = wait_for("the reload metric", lambda: (lambda s, b: b if s == 200 and
                    metric(b, "keywarden_config_last_reload_successful") == 1 else None)(
                    *http_get(base + "/metrics")), 10)
    stamp = metric(page, "keywarden_config_last_reload_success_timestamp_seconds")
    log(f"valid reload: same MainPID {pid}, reload successful at {stamp}")

    write_keeping_mode(c.path(CONFIG), config_text(moto, port, '\n[log]\nlevel = "debug"\n')
                       .replace('mode = "enforce"', 'mode = "sometimes"'))
    r = c.run("systemctl", "reload", "keywarden", check=False)
    expect(r.returncode != 0, "`systemctl reload` accepted an invalid config")
    journal = c.run("journalctl", "-u", "keywarden", "--no-pager", "-n", "50").stdout
    expect("enforcement.mode" in journal, f"the refusal does not name the key:\n{journal}")
    props = c.show("keywarden", "MainPID", "ActiveState")
    expect(props == {"MainPID": pid, "ActiveState": "active"}, f"after a refused reload: {props}")
    status, page = http_get(base + "/metrics")
    expect(status == 200, f"/metrics after a refused reload: {status}")
    expect(metric(page, "keywarden_config_last_reload_successful") == 1
           and metric(page, "keywarden_config_last_reload_success_timestamp_seconds") == stamp,
           "the refused config reached the daemon")
    log("invalid reload: refused by check-config (naming enforcement.mode), daemon unchanged")
    write_keeping_mode(c.path(CONFIG), config_text(moto, port))


def check_watchdog(c, base):
    dropin = "/run/systemd/system/keywarden.service.d"
    c.run("sh", "-c", f"mkdir -p {dropin} && printf '[Service]\\nWatchdogSec=3s\\nRestartSec=1s\\n' "
          f"> {dropin}/watchdog-test.conf")
    c.run("systemctl", "daemon-reload")
    c.run("systemctl", "restart", "keywarden")
    before = c.show("keywarden", "MainPID", "NRestarts")
    c.run("sh", "-c", f"kill -STOP {before['MainPID']}")  # minbase has no /bin/kill
    log(f"SIGSTOP to MainPID {before['MainPID']}")

    def restarted():
        p = c.show("keywarden", "MainPID", "NRestarts", "ActiveState")
        return p if (p["ActiveState"] == "active" and p["MainPID"] not in ("0", before["MainPID"])
                     and int(p["NRestarts"]) > int(before["NRestarts"])) else None

    after = wait_for("systemd to restart the stopped service", restarted, 30)
    pid1_log = c.run("journalctl", "_PID=1", "-u", "keywarden", "--no-pager").stdout
    expect("Watchdog timeout" in pid1_log, f"no watchdog timeout in the journal:\n{pid1_log}")
    wait_for("/-/healthy after the restart", lambda: http_get(base + "/-/healthy")[0] == 200, 20)
    log(f"watchdog: killed and restarted, MainPID {after['MainPID']}, NRestarts {after['NRestarts']}")
    c.run("rm", "-r", dropin)
    c.run("systemctl", "daemon-reload")
    c.run("systemctl", "restart", "keywarden")


def check_stop_and_files(c):
    started = time.monotonic()
    c.run("systemctl", "stop", "keywarden", timeout=30)
    took = time.monotonic() - started
    props = c.show("keywarden", "ActiveState", "Result")
    log(f"stopped in {took:.1f} s: {props}")
    expect(took < 10, f"`systemctl stop` took {took:.1f} s")
    # Result is "timeout" after a SIGKILL at TimeoutStopSec, "exit-code" after a non-zero exit.
    expect(props == {"ActiveState": "inactive", "Result": "success"}, f"not a clean exit: {props}")
    last = c.run("journalctl", "_PID=1", "-u", "keywarden", "--no-pager", "-n", "3").stdout
    expect("Deactivated successfully" in last, f"systemd did not see a clean exit:\n{last}")
    want = {
        "/etc/keywarden": "root:keywarden 750",
        CONFIG: "root:keywarden 640",
        "/etc/keywarden/env": "root:root 600",
        "/var/lib/keywarden": "keywarden:keywarden 700",
        "/var/lib/keywarden/state.json": "keywarden:keywarden 600",
    }
    for path, mode in want.items():
        got = c.run("stat", "-c", "%U:%G %a", path).stdout.strip()
        expect(got == mode, f"{path}: {got}, documented {mode}")
    log("owners and modes as documented")
    out = c.run("systemd-analyze", "security", "keywarden", "--no-pager").stdout
    score = [line for line in out.splitlines() if "Overall exposure level" in line]
    expect(score, f"no exposure level in:\n{out}")
    value = float(score[0].split(":")[1].split()[0])
    log(f"systemd-analyze security (inside): {value}")
    expect(value <= 2.5, f"exposure {value} > 2.5")


def state_findings(c):
    with open(c.path("/var/lib/keywarden/state.json")) as f:
        return {(e["access_key_id"], e["rule"]): e["first_seen"] for e in json.load(f)["findings"]}


def check_upgrade_and_purge(c, upgrade, rotating_old):
    c.run("systemctl", "start", "keywarden")
    pid = c.show("keywarden", "MainPID")["MainPID"]
    before = state_findings(c)
    expect(any(k == rotating_old for k, _ in before), f"the held finding is not in the state: {before}")
    config_sum = sha256(c.path(CONFIG))
    shutil.copy(upgrade, c.path("/root/keywarden-upgrade.deb"))
    c.run("dpkg", "-i", "/root/keywarden-upgrade.deb", env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=120)
    version = c.run("dpkg-query", "-W", "-f", "${Version}", "keywarden").stdout
    expect(version.endswith("+upgrade1"), f"installed version after the upgrade: {version}")
    props = wait_for("the service to run again after the upgrade", lambda: (lambda p: p if
                     p["ActiveState"] == "active" and p["MainPID"] not in ("0", pid) else None)(
                     c.show("keywarden", "MainPID", "ActiveState")), 30)
    expect(sha256(c.path(CONFIG)) == config_sum, "the upgrade replaced the edited config")
    after = state_findings(c)
    kept = {k: v for k, v in before.items() if k[0] == rotating_old}
    expect(all(after.get(k) == v for k, v in kept.items()), f"state lost: before {before}, after {after}")
    log(f"upgrade to {version}: restarted (MainPID {pid} -> {props['MainPID']}), config and state kept")

    c.run("dpkg", "--purge", "keywarden", env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=120)
    expect(c.show("keywarden", "ActiveState")["ActiveState"] == "inactive", "running after purge")
    for path in ("/etc/keywarden", "/var/lib/keywarden", "/usr/bin/keywarden",
                 "/lib/systemd/system/keywarden.service"):
        expect(not os.path.lexists(c.path(path)), f"left after purge: {path}")
    log("purged: config, state, binary and unit gone")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rootfs", required=True)
    ap.add_argument("--deb", required=True)
    ap.add_argument("--upgrade", required=True)
    args = ap.parse_args()

    started = time.monotonic()
    moto = Moto()
    workdir = tempfile.mkdtemp(prefix="kw-systemd-", dir="/var/tmp")
    c = None
    ok = False
    try:
        idle_key, rotating_old, _ = seed(moto)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        c = Container(args.rootfs, workdir)
        shutil.copy(args.deb, c.path("/root/keywarden.deb"))
        c.chroot("dpkg", "-i", "/root/keywarden.deb")
        write_keeping_mode(c.path(CONFIG), config_text(moto, port))
        env_file = c.path("/etc/keywarden/env")
        with open(os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write("AWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY=testing\n")
        log(f"installed {os.path.basename(args.deb)} in {workdir}")
        c.boot()
        pid = check_start(c, base)
        check_enforcement(c, moto, idle_key, rotating_old)
        check_reload(c, moto, port, base, pid)
        check_watchdog(c, base)
        check_stop_and_files(c)
        check_upgrade_and_purge(c, args.upgrade, rotating_old)
        ok = True
    except (CheckFailed, subprocess.SubprocessError) as e:
        print(f"\nFAILED: {e}", flush=True)
        if c is not None and c.pid1:
            print("---- journal (last 80 lines)")
            r = c.run("journalctl", "--no-pager", "-n", "80", check=False)
            print(r.stdout + r.stderr)
        if c is not None and os.path.exists(c.console):
            print("---- console (last 40 lines)")
            with open(c.console) as f:
                print("".join(f.readlines()[-40:]))
    finally:
        if c is not None:
            c.close()
            left = c.leftovers()
            if left:
                print(f"FAILED: left behind: {left}", flush=True)
                ok = False
        moto.stop()
        if c is None or not c.leftovers():
            shutil.rmtree(workdir, ignore_errors=True)
    log(f"{'systemd checks passed' if ok else 'systemd checks FAILED'} in {time.monotonic() - started:.0f} s")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
