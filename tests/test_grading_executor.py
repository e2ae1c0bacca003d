"""Is a sandboxed kernel what the grader promises: confined, capped, and always answering?"""

from __future__ import annotations

import json
import os
import sys
import time

import nbformat
import pytest

from autograder.course import ROOT, find_lesson
from autograder.grading import sandbox
from autograder.grading.executor import Limits, SandboxedKernel, Zygote, start_shared_zygote
from autograder.grading.image import build_image

pytestmark = [pytest.mark.notebook, pytest.mark.xdist_group("grading-executor")]


@pytest.fixture(scope="module")
def zygote(tmp_path_factory):
    mode, why = sandbox.probe_mode()
    if mode == "none":
        pytest.skip(f"sandboxing kernels needs root or user namespaces ({why})")
    folder = tmp_path_factory.mktemp("zygote")
    image, _ = build_image(find_lesson("01"), folder / "images")
    os.environ["ATTNLAB_TEST_SECRET"] = "do-not-leak"  # the grader's environment
    server = Zygote(image, log=folder / "zygote.log").wait_ready()
    yield server, folder
    server.close()


def _run(zygote, cells: list[str], **limits):
    server, folder = zygote
    slot = folder / f"slot{len(list(folder.glob('slot*')))}"
    (slot / "files").mkdir(parents=True)
    (slot / "files" / "data.txt").write_text("the learner's own file")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    kernel = SandboxedKernel(server, slot, 1_900_000 + os.getpid() % 1000, Limits(**limits))
    try:
        kernel.start(slot / "files")
        result = kernel.run(nb)
    finally:
        kernel.close()
    return nb, result


def _text(cell) -> str:
    return "".join(o.get("text", "") or o.get("evalue", "") for o in cell.outputs)


def test_the_kernel_sees_only_its_submission(zygote):
    """Does learner code run unprivileged, offline, alone, read-only outside its home?"""
    nb, result = _run(zygote, [
        "import os, json, socket\n"
        "facts = {'uid': os.getuid(), 'home': os.getcwd(), 'files': sorted(os.listdir('.')),\n"
        "         'pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit()),\n"
        "         'secret': os.environ.get('ATTNLAB_TEST_SECRET'),\n"
        "         'in_root': sorted(os.listdir('/root')) if os.path.isdir('/root') else [],\n"
        "         'nics': sorted(n for _, n in socket.if_nameindex())}\n"
        "for path in ('/usr/evil', '/etc/evil', os.path.dirname(os.__file__) + '/evil'):\n"
        "    try:\n        open(path, 'w')\n        facts.setdefault('wrote', []).append(path)\n"
        "    except OSError:\n        pass\n"
        "print(json.dumps(facts))"])
    facts = json.loads(_text(nb.cells[0]).strip().splitlines()[-1])
    assert facts["home"] == "/home/learner" and "data.txt" in facts["files"]
    assert facts["secret"] is None and "wrote" not in facts
    assert facts["nics"] == ["lo"]
    assert facts["pids"] == [1, 2]  # its own init and itself: no other process exists
    assert set(facts["in_root"]) <= {".pyenv"}  # only the interpreter, read-only
    if sandbox.probe_mode()[0] == "root":
        assert facts["uid"] != 0
    assert not result.events


def test_processes_a_cell_leaves_running_are_stopped(zygote):
    """A child left running, a daemon re-parented to the sandbox's init and a child a
    thread started: are they stopped after their cell (and said so), while cells that
    leave nothing behind pass the quick look at the sandbox's process tree?"""
    nb, result = _run(zygote, [
        "import os, subprocess, sys, threading, time\n"
        "sleeper = [sys.executable, '-c', 'import time; time.sleep(60)']\n"
        "child = subprocess.Popen(sleeper)\n"
        "middle = os.fork()\n"
        "if middle == 0:\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(60)\n"
        "    os._exit(0)\n"
        "os.waitpid(middle, 0)\n"
        "threading.Thread(target=subprocess.Popen, args=(sleeper,)).start()\n"
        "time.sleep(0.5)\n"
        "print(len([p for p in os.listdir('/proc') if p.isdigit()]))",
        "print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))",
        "print('quiet')",
    ])
    assert int(_text(nb.cells[0]).strip()) == 5  # init, the kernel and three more
    assert _text(nb.cells[1]).strip() == "[1, 2]"
    assert _text(nb.cells[2]).strip() == "quiet"
    assert [e for e in result.events if "left processes running" in e] == [
        'the cell "import os, subprocess, sys, threading, time" (In [1]) left processes '
        "running; they were stopped"]


def test_whole_notebook_deadline(zygote):
    """Past the notebook's deadline, is the running cell stopped and the rest marked?"""
    # the deadline falls inside one long cell, whatever the machine's speed
    nb, result = _run(zygote, ["import time", "time.sleep(30)"] + ["print('never')"] * 2,
                      notebook_timeout=3.0, cell_timeout=30)
    statuses = [c.status for c in result.cells]
    assert statuses == ["ok", "deadline", "not_run", "not_run"]
    assert "total time limit of 3 s" in _text(nb.cells[-1])
    assert any("notebook deadline (3 s)" in e for e in result.events)


def test_output_is_capped(zygote):
    """Does a cell that prints megabytes get cut, and the next cell still run?"""
    nb, result = _run(zygote, ["for i in range(40000):\n    print('x' * 100)", "print('next')"],
                      output_mb=0.5)
    assert result.cells[0].status == "truncated"
    assert sum(len(o.get("text", "")) for o in nb.cells[0].outputs) < 700_000
    assert "output cut by the grader" in nb.cells[0].outputs[-1].text
    assert _text(nb.cells[1]) == "next\n"


def test_each_kernel_is_fresh(zygote):
    """Does nothing one learner's kernel did reach the next one's?"""
    _run(zygote, ["import numpy, builtins\nnumpy.pi = 3\nbuiltins.SENTINEL = 1\n"
                  "open('/tmp/left-behind', 'w').write('x')"])
    nb, _ = _run(zygote, ["import numpy, os, builtins\n"
                          "print(numpy.pi, hasattr(builtins, 'SENTINEL'), "
                          "os.path.exists('/tmp/left-behind'))"])
    assert _text(nb.cells[0]).strip() == "3.141592653589793 False False"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux namespaces only")
def test_userns_mode_runs_a_lesson(tmp_path):
    """Does the mode for instructors without root (user namespaces) grade a real cell?"""
    if sandbox.probe_mode("userns")[0] != "userns":
        pytest.skip("unprivileged user namespaces are not available here")
    image, _ = build_image(find_lesson("01"), tmp_path / "images")
    server = Zygote(image, isolation="userns", log=tmp_path / "z.log").wait_ready()
    try:
        assert server.mode == "userns"
        (tmp_path / "slot" / "files").mkdir(parents=True)
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
            "import os\nfrom autograder.checks import check\nprint(os.getcwd(), "
            "len([p for p in os.listdir('/proc') if p.isdigit()]))")])
        kernel = SandboxedKernel(server, tmp_path / "slot", os.getuid(), Limits())
        kernel.start(tmp_path / "slot" / "files")
        kernel.run(nb)
        kernel.close()
    finally:
        server.close()
    assert _text(nb.cells[0]).strip() == "/home/learner 2"
    assert ROOT.exists()


def test_one_fork_server_serves_every_worker(zygote, tmp_path):
    """grade's shared fork server: imported once, a copy of its own per worker (each copy
    forks that worker's kernels, confined alike); a worker whose copy is gone falls back to
    a fork server of its own."""
    from autograder.grading.worker import Worker

    _, folder = zygote
    image = next((folder / "images").iterdir())
    proc, fds = start_shared_zygote(image, "auto", 2, log=tmp_path / "forkserver.log", nice=5)
    copies = [Zygote.attach(image, pair).wait_ready() for pair in fds]
    try:
        pids = [copy.pid for copy in copies]
        assert pids[0] == proc.pid and pids[1] != proc.pid  # the server and its one copy
        assert all(copy.mode == zygote[0].mode and not copy.missing for copy in copies)
        seen = []
        for copy in copies:
            nb, _ = _run((copy, folder), ["import os, sys\nprint(os.nice(0), os.getuid(), "
                                         "os.getcwd(), os.path.exists('data.txt'), "
                                         "'torch' in sys.modules)"])
            seen.append(_text(nb.cells[0]).strip())
        assert seen[0] == seen[1] and seen[0].endswith("/home/learner True True"), seen
        assert int(seen[0].split()[0]) == min(os.nice(0) + 5, 19)  # niced as the workers
        # the second worker's copy dies: its worker starts a fork server of its own
        os.kill(pids[1], 9)
        for _ in range(500):
            if not copies[1].alive():
                break
            time.sleep(0.01)
        worker = Worker.__new__(Worker)
        worker.cfg = {"image": str(image), "isolation": "auto", "log": str(tmp_path / "w.log")}
        worker.zygote = copies[1]
        own = worker.start_zygote()
        assert own is not copies[1] and not own.shared and own.alive()
        nb, _ = _run((own, folder), ["print('still grading')"])
        assert _text(nb.cells[0]).strip() == "still grading"
        own.close()
    finally:
        for copy in copies:
            copy.close()
        proc.wait(timeout=10)
    assert proc.returncode == 0


def test_the_fork_server_warms_its_lesson(tmp_path):
    """A lesson 06 image's fork server computes the lesson's course-only results once
    (attnlab.warmup): a kernel it forks starts with them cached, before any cell asks."""
    if sandbox.probe_mode()[0] == "none":
        pytest.skip("sandboxing kernels needs root or user namespaces")
    image, _ = build_image(find_lesson("06"), tmp_path / "images")
    server = Zygote(image, log=tmp_path / "zygote.log").wait_ready()
    try:
        assert not server.missing
        nb, _ = _run((server, tmp_path), [
            "from attnlab.explore.norms import gradient_norms\n"
            "print(gradient_norms.cache_info().currsize)"])
    finally:
        server.close()
    assert _text(nb.cells[0]).strip() == "12"
