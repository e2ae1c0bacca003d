"""Run one learner's notebook in a sandboxed kernel, from the trusted side.

The executor is ours and runs outside the sandbox; only the kernel is inside. It talks to
the kernel over ZeroMQ IPC sockets (the kernel has no network at all), sends the code
cells one by one, and keeps what comes back with nbclient's own message handling. It
enforces what the kernel cannot be trusted to enforce: a per-cell timeout (interrupt, then
kill), a whole-notebook deadline, a cap on output, and a kernel that dies (``os._exit``,
a crash, the memory cap) ends the run cleanly. Every cell that could not run gets an error
output saying why, so nbgrader never mistakes a test cell that never ran for a pass.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import zmq
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionComplete

SANDBOX_HOME = "/home/learner"
SANDBOX_RUN = "/run/attnlab"
PR_SET_PDEATHSIG = 1


class SandboxError(RuntimeError):
    """The grader could not start or talk to a kernel (not the learner's fault)."""


@dataclass
class Limits:
    cell_timeout: float = 60.0
    notebook_timeout: float = 600.0
    memory_mb: int = 2048
    processes: int = 64
    output_mb: float = 8.0
    tmpfs_mb: int = 256
    startup_timeout: float = 60.0
    interrupt_grace: float = 5.0


@dataclass
class CellRun:
    index: int
    status: str  # ok | error | timeout | deadline | died | not_run | truncated
    seconds: float = 0.0
    note: str = ""


@dataclass
class RunResult:
    cells: list[CellRun] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # one line each, for the report
    seconds: float = 0.0
    died_at: int | None = None


def _pdeathsig() -> None:  # pragma: no cover - runs in the child before exec
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def _interpreter_binds() -> list[tuple[str, str]]:
    """Read-only paths the kernel needs: the system, the interpreter, the environment."""
    paths = ["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc",
             sys.base_prefix, sys.prefix, os.path.realpath(sys.base_prefix),
             os.path.dirname(os.path.realpath(sys.executable))]
    seen, binds = set(), []
    for path in paths:
        if not path or path in seen or not os.path.exists(path):
            continue
        if any(path.startswith(s.rstrip("/") + "/") for s in seen if s in ("/usr", "/etc")):
            continue
        seen.add(path)
        binds.append((path, path))
    return binds


def _installed_masks() -> list[str]:
    """An installed (non-editable) copy of the real packages must stay invisible."""
    masks = []
    for name in ("autograder", "attnlab"):
        for base in sys.path:
            candidate = os.path.join(base, name)
            if base.startswith(sys.prefix) and os.path.isdir(candidate):
                masks.append(candidate)
    return masks


def _zygote_env() -> dict:
    env = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin",
                                 "/usr/bin", "/bin"]),
        "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
        "NUMEXPR_NUM_THREADS": "1", "TORCH_NUM_THREADS": "1",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1", "ATTNLAB_GRADING": "1",
    }
    if os.environ.get("MPLCONFIGDIR"):
        env["MPLCONFIGDIR"] = os.environ["MPLCONFIGDIR"]
    return env


def _start_server(image: Path, settings: dict, log, nice: int = 0,
                  **popen) -> subprocess.Popen:
    """The fork server, exec'd from the image with a clean environment (see zygote.py)."""
    def prepare() -> None:  # pragma: no cover - runs in the child before exec
        _pdeathsig()
        if nice:
            with contextlib.suppress(OSError):
                os.nice(nice)

    return subprocess.Popen(
        [sys.executable, "-E", "-s", str(image / "_attnlab_zygote.py"), json.dumps(settings)],
        stderr=log, env=_zygote_env(), cwd=str(image), preexec_fn=prepare,
        close_fds=True, **popen)


def start_shared_zygote(image: Path, isolation: str, clients: int, log: Path | None = None,
                        nice: int = 0) -> tuple[subprocess.Popen, list[tuple]]:
    """One fork server for ``clients`` workers (``grade``): it imports once and then forks
    a copy of itself per further worker. Returns the server's process and, per worker, the
    (request, reply) file descriptors to hand to that worker (``Zygote.attach``); close
    them here once handed over. The server process must be waited for after the workers
    told their copies to exit. ``nice``: its niceness (and so its kernels'), the workers'
    own, as when each worker started its fork server itself."""
    ours, theirs = [], []
    for _ in range(clients):
        request_r, request_w = os.pipe()
        reply_r, reply_w = os.pipe()
        ours.append((request_w, reply_r))
        theirs.append((request_r, reply_w))
    sink = open(log, "ab") if log else subprocess.DEVNULL
    try:
        fds = [fd for pair in theirs for fd in pair]
        proc = _start_server(image, {"isolation": isolation,
                                     "clients": [list(pair) for pair in theirs]},
                             sink, nice=nice, stdin=subprocess.DEVNULL, stdout=sink,
                             pass_fds=fds)
    finally:
        for fd in (fd for pair in theirs for fd in pair):
            os.close(fd)
        if sink is not subprocess.DEVNULL:
            sink.close()
    return proc, ours


class Zygote:
    """A worker's fork server (see zygote.py): its own process, or (``attach``) its copy
    of the one fork server ``grade`` starts for every worker."""

    def __init__(self, image: Path, isolation: str = "auto", log: Path | None = None):
        self.image = image
        self._log = open(log, "ab") if log else subprocess.DEVNULL
        self.proc = _start_server(image, {"isolation": isolation}, self._log,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._requests, self._replies = self.proc.stdin, self.proc.stdout
        self.pid: int | None = self.proc.pid
        self.shared = False
        self._next = 0
        self.mode, self.why, self.missing = "?", "", []
        self._ready = False

    @classmethod
    def attach(cls, image: Path, fds: tuple[int, int]) -> Zygote:
        """This worker's copy of the shared fork server, over the (request, reply) file
        descriptors start_shared_zygote handed to it."""
        self = cls.__new__(cls)
        self.image = image
        self._log = subprocess.DEVNULL
        self.proc = None
        self._requests = open(fds[0], "wb")
        self._replies = open(fds[1], "rb")
        self.pid = None  # known once it says it is ready
        self.shared = True
        self._next = 0
        self.mode, self.why, self.missing = "?", "", []
        self._ready = False
        return self

    def wait_ready(self) -> Zygote:
        """Block until the fork server has imported everything (it starts in the background)."""
        if self._ready:
            return self
        line = self._replies.readline()
        try:
            ready = json.loads(line)
        except ValueError:
            self.close()
            raise SandboxError("the fork server did not start (see the grading log)") from None
        self.mode = ready["mode"]
        self.why = ready.get("why", "")
        self.missing = ready.get("missing", [])
        self.pid = ready.get("pid", self.pid)
        self._ready = True
        return self

    def spawn(self, spec: dict) -> dict:
        self.wait_ready()
        self._next += 1
        request = {"op": "spawn", "id": self._next, "spec": spec}
        try:
            self._requests.write((json.dumps(request) + "\n").encode())
            self._requests.flush()
            line = self._replies.readline()
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise SandboxError(f"the fork server is gone ({exc})") from None
        if not line:
            raise SandboxError("the fork server is gone")
        reply = json.loads(line)
        if "error" in reply:
            raise SandboxError(f"could not start a sandboxed kernel: {reply['error']}")
        return reply

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        if self._requests.closed:
            return False
        return self.pid is None or _alive(self.pid)

    def close(self) -> None:
        if self.alive():
            try:
                self._requests.write(b'{"op": "exit"}\n')
                self._requests.flush()
                if self.proc is not None:
                    self.proc.wait(timeout=5)
                else:  # not our child: wait for it to go
                    end = time.monotonic() + 5
                    while self.pid and _alive(self.pid) and time.monotonic() < end:
                        time.sleep(0.01)
                    if self.pid and _alive(self.pid):
                        os.kill(self.pid, signal.SIGKILL)
            except Exception:
                if self.proc is not None:
                    self.proc.kill()
                elif self.pid:
                    with contextlib.suppress(OSError):
                        os.kill(self.pid, signal.SIGKILL)
        for stream in (self._requests, self._replies):
            with contextlib.suppress(OSError):
                stream.close()
        if self._log is not subprocess.DEVNULL:
            self._log.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return True


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (any of its threads); OSError if it is gone."""
    found = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as fh:
            found.update(int(x) for x in fh.read().split())
    return found


class SandboxedKernel:
    """One learner's kernel: a fresh fork of the zygote, confined; used once."""

    def __init__(self, zygote: Zygote, slot: Path, uid: int, limits: Limits):
        self.zygote, self.slot, self.uid, self.limits = zygote, slot, uid, limits
        self.pid: int | None = None
        self.kc = None

    # -- start
    def start(self, files: Path) -> None:
        from jupyter_client.blocking import BlockingKernelClient

        mode = self.zygote.mode
        run = self.slot / "run"
        root = self.slot / "root"
        for path in (run, root):
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)
        if mode == "root":
            os.chown(run, self.uid, self.uid)
        run.chmod(0o700)
        key = secrets.token_hex(32)
        ports = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4,
                 "hb_port": 5}
        inside_run = SANDBOX_RUN if mode in ("root", "userns") else str(run)
        info = {"transport": "ipc", "ip": f"{inside_run}/k", "key": key,
                "signature_scheme": "hmac-sha256", "kernel_name": "", **ports}
        conn = run / "kernel.json"
        conn.write_text(json.dumps(info))
        if mode == "root":
            os.chown(conn, self.uid, self.uid)
        conn.chmod(0o600)
        mb = self.limits.memory_mb
        spec = {
            "root": str(root), "run": str(run), "files": str(files),
            "uid": self.uid, "gid": self.uid,
            "ro_binds": _interpreter_binds() + [(str(self.zygote.image),
                                                 str(self.zygote.image))],
            "masks": _installed_masks(),
            "tmpfs_mb": self.limits.tmpfs_mb,
            "limits": {"memory_mb": mb, "address_space_mb": mb + 6144,
                       "processes": self.limits.processes, "file_mb": 256,
                       "open_files": 1024,
                       "cpu_s": int(self.limits.notebook_timeout * 2 + 60)},
            "env": {
                "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin",
                                         "/usr/bin", "/bin"]),
                "HOME": SANDBOX_HOME if mode != "none" else str(files),
                "LANG": "C.UTF-8", "TMPDIR": "/tmp", "MPLCONFIGDIR": "/tmp/matplotlib",
                "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                "MPLBACKEND": "module://matplotlib_inline.backend_inline",
                "PYDEVD_DISABLE_FILE_VALIDATION": "1", "ATTNLAB_GRADING": "1",
            },
            "connection_file": f"{inside_run}/kernel.json",
        }
        reply = self.zygote.spawn(spec)
        self.pid = int(reply["pid"])
        host_info = dict(info, ip=f"{run}/k")
        kc = BlockingKernelClient()
        # our sockets connect before the kernel has bound its IPC endpoints; ZeroMQ's
        # default is to retry such a connect every 100 ms: try every 5 ms instead
        kc.context.setsockopt(zmq.RECONNECT_IVL, 5)
        kc.load_connection_info(host_info)
        kc.start_channels()
        self.kc = kc
        deadline = time.monotonic() + self.limits.startup_timeout
        while not self._handshake(kc):  # shell answers and iopub is subscribed
            if not _alive(self.pid):
                error = (run / "startup-error")
                raise SandboxError("the sandboxed kernel died while starting" + (
                    f": {error.read_text()[:300]}" if error.exists() else ""))
            if time.monotonic() > deadline:
                raise SandboxError("the sandboxed kernel did not answer in time")
        if mode == "root":  # sockets are bound: the learner may no longer write here
            os.chown(run, 0, 0)
            run.chmod(0o755)

    def _handshake(self, kc) -> bool:
        """A kernel_info reply on shell and a message on iopub (else a fast first cell's
        messages could be published before our subscription is live, and be lost).

        Any iopub message proves the subscription live (a SUB socket gets only what is
        published after it subscribed). The kernel's answer to the first request is often
        published before that (our iopub connects as the kernel binds), so once the shell
        has answered, kernel_info is asked again every 50 ms until iopub hears one, as
        jupyter_client's own wait_for_ready does (which waits 0.2 s per try).
        """
        kc.kernel_info()
        shell = iopub = False
        end = time.monotonic() + 0.5
        again = None  # when to ask again (once the shell has answered)
        while time.monotonic() < end and not (shell and iopub):
            try:
                kc.get_iopub_msg(timeout=0.01 if not shell else 0.05)
                iopub = True
            except queue.Empty:
                pass
            except Exception:
                continue
            if not shell:
                try:
                    msg = kc.get_shell_msg(timeout=0.01)
                    shell = msg.get("msg_type") == "kernel_info_reply"
                except queue.Empty:
                    pass
                except Exception:
                    continue
                if shell:
                    again = time.monotonic()
            if shell and not iopub and time.monotonic() >= again:
                kc.kernel_info()
                again = time.monotonic() + 0.05
        if shell and iopub:
            while True:  # drain the rest of the start-up chatter
                try:
                    kc.get_iopub_msg(timeout=0.02)
                except queue.Empty:
                    break
                except Exception:
                    continue
            while True:  # and the answers to repeated requests
                try:
                    kc.get_shell_msg(timeout=0)
                except queue.Empty:
                    break
                except Exception:
                    continue
        return shell and iopub

    # -- stop
    def kill(self) -> None:
        if self.pid and _alive(self.pid):
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            for _ in range(200):
                if not _alive(self.pid):
                    break
                time.sleep(0.01)
        self._kill_strays()

    def close(self) -> None:
        if self.kc is not None:
            try:
                self.kc.stop_channels()
            except Exception:
                pass
        self.kill()
        shutil.rmtree(self.slot / "run", ignore_errors=True)

    def _kill_strays(self) -> int:
        """Processes the learner's code left running: everything in the sandbox's PID
        namespace except its init (pid 1) and the kernel (pid 2)."""
        if self.zygote.mode not in ("root", "userns") or not self.pid:
            return 0
        try:
            target = os.readlink(f"/proc/{self.pid}/ns/pid")
            if target == os.readlink("/proc/self/ns/pid"):
                return 0  # not a namespace of its own: "everything in it" would be everyone
        except OSError:
            return 0
        if self._only_init_and_kernel():
            return 0
        killed = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == self.pid:
                continue
            try:
                if os.readlink(f"/proc/{entry.name}/ns/pid") != target:
                    continue
                with open(f"/proc/{entry.name}/status") as fh:
                    lines = fh.read().splitlines()
                nspid = next(ln for ln in lines if ln.startswith("NSpid:")).split()[-1]
                state = next(ln for ln in lines if ln.startswith("State:")).split()[1]
                if nspid not in ("1", "2") and state != "Z":
                    os.kill(int(entry.name), signal.SIGKILL)
                    killed += 1
            except (OSError, StopIteration, ValueError, IndexError):
                continue
        return killed

    def _only_init_and_kernel(self) -> bool:
        """After most cells the sandbox's PID namespace holds just its init (``self.pid``,
        its pid 1) and the kernel: the init's only child is the kernel, which has none.
        Every process in a PID namespace descends from its pid 1 (orphans are re-parented
        to it, or to a subreaper inside it), so this reads a few small files instead of
        every process's namespace on the machine (thousands on a hub's server)."""
        try:
            with open(f"/proc/{self.pid}/status") as fh:
                nspid = next(ln for ln in fh if ln.startswith("NSpid:")).split()[-1]
            kids = _children(self.pid)
            return nspid == "1" and len(kids) == 1 and not _children(kids.pop())
        except (OSError, ValueError, StopIteration):
            return False  # gone, or no children files (an old kernel): look at every one

    def _reap(self) -> None:
        """Stopped children of the kernel stay zombies (and count against the process cap)
        until the kernel waits for them: ask it to, silently, between two cells."""
        code = ("import os as _o\nwhile True:\n    try:\n        _p, _ = _o.waitpid(-1, "
                "_o.WNOHANG)\n    except ChildProcessError:\n        break\n    if not _p:\n"
                "        break\ndel _o")
        try:
            msg_id = self.kc.execute(code, silent=True, store_history=False,
                                     allow_stdin=False)
        except Exception:
            return
        end = time.monotonic() + 5
        while time.monotonic() < end and not self._replied(msg_id):
            time.sleep(0.02)

    def _replied(self, msg_id: str) -> float | None:
        """Has the shell answered this execute request? (then the cell is finished)"""
        while True:
            try:
                msg = self.kc.get_shell_msg(timeout=0)
            except queue.Empty:
                return None
            except Exception:
                continue
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                return time.monotonic()

    # -- run
    def run(self, nb: nbformat.NotebookNode) -> RunResult:
        result = RunResult()
        lim = self.limits
        client = NotebookClient(nb, km=None, allow_errors=True)
        client.record_timing = False
        client.store_widget_state = True
        client.reset_execution_trackers()
        client.clear_before_next_output = False
        start = time.monotonic()
        deadline = start + lim.notebook_timeout
        budget = int(lim.output_mb * (1 << 20))
        stop_reason = None
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            cell.outputs = []
            cell.execution_count = None
            if stop_reason is not None:
                cell.outputs.append(_error_output("NotRun", stop_reason))
                result.cells.append(CellRun(index, "not_run", note=stop_reason))
                continue
            if not cell.source.strip():
                continue
            run = self._run_cell(client, cell, index, deadline, budget)
            result.cells.append(run)
            if run.status == "died":
                result.died_at = index
                stop_reason = (f"not run: the kernel died in an earlier cell ({run.note})")
                result.events.append(f"kernel died in {_label(cell)} ({run.note})")
            elif run.status == "deadline":
                stop_reason = ("not run: the notebook ran past its total time limit of "
                               f"{lim.notebook_timeout:g} s")
                result.events.append(f"notebook deadline ({lim.notebook_timeout:g} s) "
                                     f"reached in {_label(cell)}")
            elif run.status == "timeout":
                result.events.append(f"{_label(cell)} timed out ({lim.cell_timeout:g} s)")
            elif run.status == "truncated":
                result.events.append(f"output flood: {_label(cell)} printed too much "
                                     f"(output cut at {lim.output_mb:g} MB)")
            limit = _limit_hit(cell)
            if limit:
                result.events.append(f"{_label(cell)} {limit}")
            if self._kill_strays():
                result.events.append(f"{_label(cell)} left processes running; they were "
                                     "stopped")
                for _ in range(20):  # a fork bomb forks while we kill
                    if not self._kill_strays():
                        break
                self._reap()
        result.seconds = time.monotonic() - start
        try:
            client.set_widgets_metadata()
        except Exception:
            pass
        return result

    def _run_cell(self, client: NotebookClient, cell, index: int, deadline: float,
                  budget: int) -> CellRun:
        lim = self.limits
        kc = self.kc
        started = time.monotonic()
        if not _alive(self.pid):
            cell.outputs.append(_error_output("DeadKernel", "not run: the kernel had died"))
            return CellRun(index, "died", note="dead before the cell started")
        msg_id = kc.execute(cell.source, store_history=True, allow_stdin=False,
                            stop_on_error=False)
        cell_deadline = min(started + lim.cell_timeout, deadline)
        used, truncated, interrupted_at, status = 0, False, None, "ok"
        replied_at = None
        while True:
            now = time.monotonic()
            if replied_at is not None and now > replied_at + 2.0:
                break  # the shell replied but iopub's "idle" was lost (a full queue)
            if interrupted_at is None and now > cell_deadline:
                status = "deadline" if now > deadline - 0.001 and \
                    deadline < started + lim.cell_timeout else "timeout"
                interrupted_at = now
                try:
                    os.kill(self.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
            if interrupted_at is not None and now > interrupted_at + lim.interrupt_grace:
                self.kill()  # it would not stop: no more cells from this kernel
                note = ("this cell ran past the time limit and would not stop; the kernel "
                        "was stopped")
                cell.outputs.append(_error_output("CellTimeoutError", note))
                return CellRun(index, "died", time.monotonic() - started,
                               note="it would not stop after its time limit")
            try:
                msg = kc.get_iopub_msg(timeout=0.2)
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                continue  # a forged or garbled message: the kernel is not trusted
            except queue.Empty:
                replied_at = replied_at or self._replied(msg_id)
                if not _alive(self.pid):
                    note = ("the kernel died while running this cell (os._exit, a crash, or "
                            "the memory limit)")
                    cell.outputs.append(_error_output("DeadKernel", note))
                    return CellRun(index, "died", time.monotonic() - started,
                                   note=note)
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg.get("msg_type") in ("stream", "display_data", "execute_result", "error",
                                   "update_display_data"):
                size = len(json.dumps(msg.get("content", {}), default=str))
                used += size
                if used > budget:
                    truncated = True
                    continue
            try:
                client.process_message(msg, cell, index)
            except CellExecutionComplete:
                break
            except Exception:  # a malformed message from the kernel: ignore it
                continue
        seconds = time.monotonic() - started
        if interrupted_at is not None:
            limit = lim.notebook_timeout if status == "deadline" else lim.cell_timeout
            what = "the notebook's total" if status == "deadline" else "the cell's"
            _drop_interrupt_noise(cell)
            cell.outputs.append(_error_output(
                "CellTimeoutError", f"stopped: this cell ran past {what} time limit of "
                                    f"{limit:g} s (an endless loop?)"))
            return CellRun(index, status, seconds)
        if truncated:
            cell.outputs.append(nbformat.v4.new_output(
                "stream", name="stdout",
                text=f"\n... output cut by the grader: more than {lim.output_mb:g} MB ...\n"))
            return CellRun(index, "truncated", seconds)
        failed = any(o.output_type == "error" for o in cell.outputs)
        return CellRun(index, "error" if failed else "ok", seconds)


def _label(cell) -> str:
    """A cell as an instructor finds it in the feedback: its first line, its In [n]."""
    first = next((ln.strip() for ln in cell.source.splitlines() if ln.strip()), "")
    first = first if len(first) <= 50 else first[:47] + "..."
    count = cell.get("execution_count")
    return f'the cell "{first}"' + (f" (In [{count}])" if count else "")


def _error_output(ename: str, evalue: str):
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue,
                                  traceback=[f"\x1b[0;31m{ename}\x1b[0m: {evalue}"])


def _limit_hit(cell) -> str:
    for out in cell.get("outputs", []):
        if out.get("output_type") != "error":
            continue
        text = f"{out.get('ename', '')}: {out.get('evalue', '')}"
        if out.get("ename") == "MemoryError" or "not enough memory" in text or \
                "Cannot allocate memory" in text or "Unable to allocate" in text:
            return "hit the memory limit"
        if "Resource temporarily unavailable" in text or "can't start new thread" in text:
            return "hit the process limit"
        if "File too large" in text or "No space left" in text:
            return "hit the disk limit"
        if out.get("ename") == "SystemExit":
            return "called sys.exit (the kernel went on with the next cell)"
    return ""


def _drop_interrupt_noise(cell) -> None:
    cell.outputs = [o for o in cell.outputs
                    if not (o.output_type == "error" and o.get("ename") == "KeyboardInterrupt")]
