"""A JupyterLab server and a Chromium driven by Playwright, for the end-to-end browser suite."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from autograder.course import ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-quic"]


def ensure_chromium() -> str:
    """Debian's chromium (`make system-deps` installs it), else skip with a reason."""
    if not CHROMIUM.exists():
        pytest.skip("browser suite: /usr/bin/chromium is not installed (make system-deps)")
    return str(CHROMIUM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """`jupyter lab` from the project's environment, on loopback, with a token; always stopped."""

    def __init__(self, root: Path, config_dir: Path, log: Path):
        self.root, self.config_dir, self.log_path = root, config_dir, log
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}{'&' if '?' in path else '?'}token={self.token}"

    def start(self, timeout: float = 90) -> LabServer:
        env = {**os.environ, "JUPYTER_CONFIG_PATH": str(self.config_dir),
               "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
        env.pop("ATTNLAB_GRADING", None)
        args = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--ServerApp.port={self.port}",
                "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={self.token}",
                f"--ServerApp.root_dir={self.root}", "--LabApp.expose_app_in_browser=True",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        if os.geteuid() == 0:
            args.append("--allow-root")
        self._log = open(self.log_path, "w")  # noqa: SIM115  (closed in stop)
        self.proc = subprocess.Popen(args, cwd=self.root, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited early:\n{self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(self.url("api/status"), timeout=2).read()
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"JupyterLab did not answer in {timeout} s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()


def learner_tree(tmp: Path) -> Path:
    """A learner's checkout after `make lab`: workspace/ copies, plus the solutions beside them."""
    from attnlab.workspace import sync

    sync(ROOT / "lessons", tmp / "workspace")
    shutil.copytree(ROOT / "solutions", tmp / "solved",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return tmp


# JavaScript run in the page, through window.jupyterapp (LabApp.expose_app_in_browser).
JS_WAIT_READY = """async (path) => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  if (!panel.context || panel.context.path !== path) throw new Error('wrong notebook');
  window.__panel = panel;  // the notebook under test, whatever gets focus later
  await panel.context.ready;
  await panel.sessionContext.ready;
  for (let t = 0; t < 600; t++) {  // up to 60 s for the kernel to come up
    const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    if (kernel && kernel.status === 'idle') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return panel.content.model.cells.length;
}"""

JS_RUN_CELL = """async (i) => {
  const app = window.jupyterapp;
  const panel = window.__panel;
  const cell = panel.content.widgets[i];
  const done = () => cell.model.type !== 'code' || cell.model.executionCount !== null
    || cell.model.sharedModel.getSource().trim() === '';  // JupyterLab skips empty cells
  for (let attempt = 0; attempt < 3; attempt++) {  // a kernel still settling may drop a request
    app.shell.activateById(panel.id);
    panel.content.activeCellIndex = i;
    await app.commands.execute('notebook:run-cell');
    if (done()) return true;
    await new Promise((r) => setTimeout(r, 1000));
  }
  return done();
}"""

JS_OUTPUTS = """() => {
  const panel = window.__panel;
  return panel.content.widgets.map((cell) =>
    cell.model.type === 'code' ? cell.model.sharedModel.toJSON().outputs || [] : []);
}"""

JS_SAVE = """async () => {
  window.jupyterapp.shell.activateById(window.__panel.id);
  await window.__panel.context.save();
}"""
