"""A class hub for tests: hub/roster.py's accounts and hub/jupyterhub_config.py's JupyterHub.

Real system users (removed again), the real PAM authenticator, the real proxy, spawner and
idle culler, on loopback ports chosen here; an extra API-only service token drives the
hub's REST API. Needs root; everything it starts is stopped, by process id.
"""

from __future__ import annotations

import contextlib
import csv
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from autograder.course import ROOT

HUB_CONFIG = ROOT / "hub" / "jupyterhub_config.py"
CHP = ROOT / ".venv" / "node" / "node_modules" / ".bin" / "configurable-http-proxy"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_hub() -> None:
    """Skip, with the reason, where a class hub cannot run here."""
    if os.geteuid() != 0:
        pytest.skip("class hub: needs root (it creates system users), as `make hub` does")
    if shutil.which("useradd") is None:
        pytest.skip("class hub: no useradd on this machine")
    if not CHP.exists():
        pytest.skip(f"class hub: {CHP} missing (run `make hub-proxy`)")
    try:
        import jupyterhub  # noqa: F401
        import jupyterhub_idle_culler  # noqa: F401
    except ImportError:
        pytest.skip("class hub: jupyterhub not installed (pip install -e '.[hub]')")


def remove_user(name: str) -> None:
    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        return
    if uid < 1000:
        raise RuntimeError(f"refusing to remove system account {name}")
    kill_uid(uid)
    subprocess.run(["userdel", "--remove", name], capture_output=True)
    with contextlib.suppress(subprocess.CalledProcessError):
        subprocess.run(["groupdel", name], capture_output=True, check=True)


def kill_uid(uid: int) -> None:
    """Stop every process running as ``uid`` (one of this test's own users), by id."""
    import psutil

    procs = [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and
             p.info["uids"].real == uid]
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(procs, timeout=10)


class ClassHub:
    """One course's hub in a scratch folder, with the members of ``roster`` (name -> role)."""

    def __init__(self, roster: dict[str, str], mem_limit: str = "1G"):
        self.roster, self.mem_limit = roster, mem_limit
        self.dir = Path(tempfile.mkdtemp(prefix="attnlab-hub-", dir="/tmp"))
        os.chmod(self.dir, 0o755)  # the class's users must reach the course and exchange
        self.hub_dir = self.dir / "hub"
        self.port, self.api_port, self.proxy_port = free_port(), free_port(), free_port()
        self.token = secrets.token_hex(24)
        self.proc: subprocess.Popen | None = None
        self.strays: set[int] = set()  # processes of a killed hub, stopped at the end

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def course(self) -> Path:
        return self.hub_dir / "course"

    @property
    def exchange(self) -> Path:
        return self.hub_dir / "class" / "exchange" / "attention-lab"

    # -- accounts
    def write_roster(self, lines: list[str]) -> Path:
        path = self.dir / "roster.csv"
        path.write_text("\n".join(["username,role,full name", *lines]) + "\n")
        return path

    def make_accounts(self) -> None:
        for name in self.roster:
            remove_user(name)  # left over from an interrupted run
        lines = [f"{n},{r},Test {n.title()}" for n, r in self.roster.items()]
        done = self.roster_tool(self.write_roster(lines))
        if done.returncode != 0:
            raise RuntimeError(done.stderr)

    def roster_tool(self, roster: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "hub" / "roster.py"), str(roster),
                               "--hub-dir", str(self.hub_dir)], capture_output=True, text=True)

    def password(self, name: str) -> str:
        with open(self.hub_dir / "state" / "passwords.csv", newline="") as fh:
            return {r["username"]: r["initial password"] for r in csv.DictReader(fh)}[name]

    # -- the hub
    def start(self, timeout: float = 120) -> ClassHub:
        config = self.hub_dir / "state" / "test_config.py"
        config.write_text(
            "c = get_config()  # noqa: F821\n"
            f"load_subconfig({str(HUB_CONFIG)!r})  # noqa: F821\n"
            "c.JupyterHub.services.append({'name': 'test-driver', "
            f"'api_token': {self.token!r}}})\n"
            "c.JupyterHub.load_roles.append({'name': 'test-driver', 'services': "
            "['test-driver'], 'scopes': ['admin:users', 'admin:servers', 'tokens', "
            "'list:users', 'read:users']})\n")
        env = {**os.environ, "ATTNLAB_HUB_DIR": str(self.hub_dir),
               "ATTNLAB_HUB_PORT": str(self.port), "ATTNLAB_HUB_API_PORT": str(self.api_port),
               "ATTNLAB_PROXY_API_PORT": str(self.proxy_port), "ATTNLAB_MEM_LIMIT": self.mem_limit,
               "ATTNLAB_CHP": str(CHP)}
        self.log = open(self.dir / "hub.log", "a")  # noqa: SIM115  (closed in stop)
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "jupyterhub"), "-f", str(config)],
            cwd=self.hub_dir / "state", env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the hub exited:\n{self.log_tail()}")
            with contextlib.suppress(requests.RequestException):
                if self.api("GET", "/").status_code == 200:
                    return self
            time.sleep(0.5)
        raise RuntimeError(f"the hub did not answer in {timeout} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        return (self.dir / "hub.log").read_text(errors="replace")[-chars:]

    def kill(self) -> None:
        """SIGKILL the hub alone, as a crash would: its proxy, culler and servers live on."""
        import psutil

        self.strays |= {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}
        self.proc.kill()
        self.proc.wait()
        self.log.close()

    def stop(self) -> None:
        import psutil

        if self.proc and self.proc.poll() is None:
            self.strays |= {p.pid for p in psutil.Process(self.proc.pid).children(True)}
            self.proc.send_signal(signal.SIGTERM)  # the hub stops its servers and proxy
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.log.close()
        for pid in self.strays:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()

    def cleanup(self) -> None:
        self.stop()
        for name in self.roster:
            remove_user(name)
        for cgroup in (Path("/sys/fs/cgroup/memory/attnlab"), Path("/sys/fs/cgroup/attnlab")):
            for name in self.roster:
                with contextlib.suppress(OSError):
                    (cgroup / name).rmdir()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- REST API
    def api(self, method: str, path: str, token: str | None = None, **kw) -> requests.Response:
        return requests.request(method, f"{self.url}/hub/api{path}", timeout=60,
                                headers={"Authorization": f"token {token or self.token}"},
                                **kw)

    def user_token(self, name: str) -> str:
        self.ensure_user(name)
        r = self.api("POST", f"/users/{name}/tokens", json={"note": "test", "expires_in": 3600})
        r.raise_for_status()
        return r.json()["token"]

    def ensure_user(self, name: str) -> None:
        """The hub knows a member from their first login; the REST API can add them first."""
        if self.api("GET", f"/users/{name}").status_code == 404:
            self.api("POST", f"/users/{name}").raise_for_status()

    def spawn(self, name: str, timeout: float = 180) -> None:
        self.ensure_user(name)
        r = self.api("POST", f"/users/{name}/server")
        assert r.status_code in (201, 202, 400), r.text  # 400: already running
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.api("GET", f"/users/{name}").json()["servers"].get("", {})
            if server.get("ready"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"{name}'s server did not start:\n{self.log_tail()}")

    def server_pid(self, name: str) -> int:
        import psutil

        for p in psutil.process_iter(["uids", "cmdline"]):
            if p.info["uids"] and p.info["uids"].real == pwd.getpwnam(name).pw_uid and \
                    any("jupyterhub-singleuser" in a for a in p.info["cmdline"] or []):
                return p.pid
        raise LookupError(f"no server process for {name}")

    # -- as a member, on the machine (what their server's terminal would do)
    def as_user(self, name: str, *args: str, cwd: Path | None = None,
                check: bool = True) -> subprocess.CompletedProcess:
        role = self.roster[name]
        home = Path(pwd.getpwnam(name).pw_dir)
        bridge = self.hub_dir / "runtime" / "bin"
        python_bin = bridge if bridge.exists() else Path(sys.executable).parent
        env = {"HOME": str(home), "USER": name, "LANG": "C.UTF-8",
               "PATH": f"{python_bin}:/usr/bin:/bin",
               "JUPYTER_CONFIG_PATH": str(ROOT / "hub" / "jupyter" / role),
               "ATTNLAB_COURSE_DIR": str(self.course),
               "ATTNLAB_EXCHANGE": str(self.hub_dir / "class" / "exchange")}
        where = cwd or (self.course if role == "instructor" else home)
        done = subprocess.run(["runuser", "-u", name, "--", "env", "-i",
                               *(f"{k}={v}" for k, v in env.items()), *args],
                              cwd=where, capture_output=True, text=True, timeout=600)
        if check and done.returncode != 0:
            raise AssertionError(f"{name}: {' '.join(args)} failed:\n{done.stdout[-1500:]}"
                                 f"\n{done.stderr[-3000:]}")
        return done

    def put_file(self, name: str, path: Path, text: str) -> None:
        """A file a member wrote: theirs, readable by them alone."""
        path.write_text(text, encoding="utf-8")
        user = pwd.getpwnam(name)
        os.chown(path, user.pw_uid, user.pw_gid)
        os.chmod(path, 0o600)
