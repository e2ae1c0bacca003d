"""The fork server: one per grading worker, a fresh kernel per submission.

Started as ``python <image>/_attnlab_zygote.py '<json settings>'`` with a clean
environment, it imports what every lesson needs (numpy, torch, matplotlib, ipykernel, the
record half of the checks, attnlab) once, computes what its lesson's cells compute from the
course's code alone (``attnlab.warmup``, named by the image's LESSON file: every kernel
then starts with those results cached), and then only forks. It never runs learner code
and never holds anything secret: it was exec'd, not forked from the grader, so no database
URL, reference kernel or solution is in its memory. Each fork confines itself
(``sandbox.py``) and becomes that learner's IPython kernel; nothing passes from one
learner's kernel to another's.

Forking after torch has run a parallel op can hang the child, so this process never runs
one: it imports torch with every thread pool sized to one (the warm-up's small tensor ops
run on this one thread) and checks that it is still single-threaded before each fork.

Protocol (JSON lines): stdout first says ``{"ready": ...}``; then each stdin request
``{"op": "spawn", "id": n, "spec": {...}}`` is answered ``{"id": n, "pid": kernel_pid}``
or ``{"id": n, "error": "..."}``.

``grade`` starts one fork server for all its workers (settings ``"clients"``: a request and
a reply pipe per worker, instead of stdin and stdout): it imports once, then forks itself
once per further worker, each copy serving one worker with the same protocol.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import time

import _attnlab_sandbox as sandbox  # copied into the image next to this file

PRELOAD = (
    "numpy", "torch", "matplotlib", "matplotlib.pyplot", "matplotlib_inline.backend_inline",
    "scipy.special", "IPython", "ipykernel.kernelapp", "ipykernel.ipkernel",
    "ipykernel.zmqshell", "ipywidgets", "autograder.checks", "attnlab", "attnlab.plots",
    "attnlab.data",
    # the checks' torch-function watcher imports torch._dynamo (~800 modules, sympy among
    # them) at the first attention call: seconds a loaded machine would take from a cell
    "torch._dynamo",
    # every kernel's IPKernelApp.initialize imports its debugger (debugpy, pydevd): done
    # once here instead of in each learner's kernel ("kernel fork" in BENCHMARKS.md)
    "ipykernel.debugger",
    # and what the rest of IPKernelApp.initialize and its shell import (magics, pdb,
    # tornado's asyncio platform): nothing runs, the modules are only loaded
    "IPython.core.completerlib", "IPython.core.debugger", "IPython.core.magic_arguments",
    "IPython.core.magics.ast_mod", "IPython.core.magics.execution", "IPython.core.oinspect",
    "IPython.extensions.storemagic", "IPython.utils.module_paths", "IPython.utils.wildcard",
    "bdb", "cmd", "faulthandler", "pdb", "tornado.platform.asyncio",
    # and what IPython imports to format a learner's first traceback (most learners' runs
    # have one: an unanswered exercise raises)
    "stack_data", "executing", "asttokens", "pure_eval", "pygments.formatters.terminal256",
    "pygments.styles",
)

# the lesson side's warm-up (its lesson(number) fills the caches of what that lesson's cells
# compute from the course's code alone): loaded by name, as PRELOAD's lesson-side modules
# are, since the grader itself never imports attnlab (tests/test_package_layers.py)
WARMUP = "attnlab.warmup"


def _preload(extra: list[str]) -> list[str]:
    missing = []
    for name in (*PRELOAD, *extra):
        try:
            importlib.import_module(name)
        except Exception as exc:  # an optional library, or a lesson module with a bug
            missing.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
    try:  # what each kernel's enable_matplotlib("inline") would read: the installed
        # packages' backend entry points (matplotlib keeps them once read)
        from matplotlib.backends import backend_registry

        backend_registry.list_all()
    except Exception:  # noqa: BLE001  (an older matplotlib: each kernel reads them)
        pass
    return missing


def _warm() -> list[str]:
    """What this image's lesson computes from the course's code alone (attnlab.warmup), once
    here: every kernel forked after it starts with those results cached."""
    try:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "LESSON")) as fh:
            number = fh.read().strip()
    except OSError:  # an image without it: each kernel computes its own, as before
        return []
    try:
        importlib.import_module(WARMUP).lesson(number)
    except Exception as exc:  # noqa: BLE001  (a bug in the course: the cells will show it)
        return [f"attnlab.warmup: {type(exc).__name__}: {exc}"[:300]]
    return []


def _run_kernel(spec: dict) -> None:
    """In the confined grandchild: become this learner's IPython kernel."""
    import random

    import numpy

    random.seed()  # a fresh process would have fresh global streams
    numpy.random.seed()
    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.initialize(["-f", spec["connection_file"], "--IPKernelApp.log_level=ERROR",
                    "--HistoryManager.hist_file=:memory:", "--HistoryManager.enabled=False"])
    # matplotlib's inline backend was imported above, before this shell existed, so it
    # never hooked figures into the shell: without this a figure is only its repr
    # ("<Figure size ...>") instead of an image, as in a learner's own Jupyter
    app.shell.enable_matplotlib("inline")
    import autograder.checks

    autograder.checks.snapshot()  # the recorder as it is before any learner code runs
    app.start()


def _spawn(spec: dict) -> dict:
    if sandbox.threads() != 1:
        return {"error": f"the fork server has {sandbox.threads()} threads; refusing to fork"}
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            sandbox.confine_and_fork(spec, lambda p: os.write(write, f"pid {p}\n".encode()))
            _run_kernel(spec)
            os._exit(0)
        except BaseException as exc:  # noqa: BLE001
            message = f"error {type(exc).__name__}: {exc}".replace("\n", " ")[:500]
            try:
                os.write(write, (message + "\n").encode())
            except OSError:
                pass
            try:
                with open(os.path.join(sandbox.SANDBOX_RUN, "startup-error"), "w") as fh:
                    fh.write(message)
            except OSError:
                pass
            os._exit(70)
    os.close(write)
    data = b""
    deadline = time.monotonic() + 30
    while b"\n" not in data and time.monotonic() < deadline:
        chunk = os.read(read, 1024)
        if not chunk:
            break
        data += chunk
    os.close(read)
    line = data.split(b"\n", 1)[0].decode(errors="replace")
    if line.startswith("pid "):
        return {"pid": int(line[4:]), "middle": pid}
    return {"error": line[6:] if line.startswith("error ") else "the sandbox did not start"}


def _serve(requests, out, ready: dict) -> None:
    """Answer one worker's spawn requests (JSON lines) until it says exit or goes away."""
    out.write(json.dumps(dict(ready, pid=os.getpid())) + "\n")
    out.flush()
    for line in requests:
        try:
            request = json.loads(line)
        except ValueError:
            continue
        if request.get("op") == "spawn":
            spec = dict(request["spec"], mode=ready["mode"])
            reply = _spawn(spec)
        elif request.get("op") == "exit":
            break
        else:
            reply = {"error": f"unknown op {request.get('op')!r}"}
        reply["id"] = request.get("id")
        out.write(json.dumps(reply) + "\n")
        out.flush()


def _serve_clients(clients: list[list[int]], ready: dict) -> None:
    """One fork server for every worker: imported once, then forked once per worker after
    the first, so each worker still has a server of its own (its own pipes; a crash takes
    one server down, not the others) sharing the imported pages with the rest."""
    mine = 0
    if ready["threads"] == 1:  # else forking is unsafe: the others start their own
        for index in range(1, len(clients)):
            if os.fork() == 0:
                mine = index
                break
    for index, (request_fd, reply_fd) in enumerate(clients):
        if index != mine:
            os.close(request_fd)
            os.close(reply_fd)
    request_fd, reply_fd = clients[mine]
    with open(request_fd, encoding="utf-8") as requests, \
            open(reply_fd, "w", encoding="utf-8") as out:
        _serve(requests, out, ready)


def main() -> None:
    settings = json.loads(sys.argv[1])
    out = sys.stdout
    sys.stdout = sys.stderr  # only protocol lines on the real stdout
    mode, why = sandbox.probe_mode(settings.get("isolation", "auto"))
    missing = _preload(settings.get("preload", [])) + _warm()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # middles are reaped automatically
    import _attnlab_sandbox  # noqa: F401  (already imported; keeps the name bound)

    ready = {"ready": True, "mode": mode, "why": why, "missing": missing,
             "threads": sandbox.threads()}
    if settings.get("clients"):
        _serve_clients(settings["clients"], ready)
    else:
        _serve(sys.stdin, out, ready)
    # nothing to save or close: skip the interpreter's teardown of torch & co. (about a
    # second per worker at the end of every run)
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
