"""A class hub under load: N learners log in, start their servers and self-check at once.

For each N (default 5, 10, 20) a fresh class hub (tests/hubclass/class_hub.py: `make hub`'s
configuration, real system users, loopback only) gets N learners. Each learner, through the
hub's REST API, gets a token and starts their server (all at once); once every server is up,
each runs the lesson's self-check (`python -m autograder check`, as themselves, inside their
server's memory cgroup) on the solution of lesson 01, all at the same moment. Reported: server
start time (request to ready), self-check wall time p50/p95, peak memory per learner (their
cgroup's high-water mark: server + self-check) and of the whole class, and the largest N
whose p95 stays within 60 s. Everything started is stopped and every account removed.

    sudo .venv/bin/python benchmarks/hub_load.py [--sizes 5 10 20]

Writes benchmarks/HUB_LOAD.md and rebuilds BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import compose  # noqa: E402
from hub.spawner import cgroup_parent  # noqa: E402
from tests.grading_fixtures.submissions import LESSON, notebook  # noqa: E402
from tests.hubclass.class_hub import ClassHub, require_hub  # noqa: E402

P95_BUDGET_S = 60.0
CHECK_TIMEOUT_S = 600
QUIET_LOAD, QUIET_WAIT_S = 1.0, 180  # each row waits (this long at most) for this load


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def peak_bytes(name: str) -> int | None:
    where = cgroup_parent()
    if where is None:
        return None
    parent, _ = where
    for file in ("memory.max_usage_in_bytes", "memory.peak"):
        path = parent / name / file
        if path.exists():
            return int(path.read_text())
    return None


def settle() -> float:
    """The 1-minute load average once it is below QUIET_LOAD (the last row's class gone),
    or after QUIET_WAIT_S: what else the machine was doing as a row began."""
    end = time.monotonic() + QUIET_WAIT_S
    while os.getloadavg()[0] >= QUIET_LOAD and time.monotonic() < end:
        time.sleep(5)
    return os.getloadavg()[0]


def run_class(n: int) -> dict:
    before = settle()
    roster = {"hl-teach": "instructor", **{f"hl-l{i:02d}": "learner" for i in range(n)}}
    learners = [u for u, r in roster.items() if r == "learner"]
    hub = ClassHub(roster, mem_limit="2G")  # make hub's default
    try:
        hub.make_accounts()
        hub.start()
        import nbformat

        text = nbformat.writes(notebook({}))  # the solution, as a learner would have it
        for name in learners:
            folder = Path(f"/home/{name}/{LESSON}")
            folder.mkdir()
            os.chown(folder, *_ids(name))
            hub.put_file(name, folder / f"{LESSON}.ipynb", text)

        def start(name: str) -> float:
            t0 = time.monotonic()
            hub.user_token(name)
            hub.spawn(name, timeout=600)
            return time.monotonic() - t0

        with ThreadPoolExecutor(n) as pool:
            starts = list(pool.map(start, learners))
        barrier = threading.Barrier(n)

        def check(name: str) -> tuple[float, bool]:
            procs = _procs_file(name)
            barrier.wait()
            t0 = time.monotonic()
            try:
                done = subprocess.run(
                    ["sh", "-c", f'echo $$ > {procs}; exec "$@"', "sh",
                     *_as_user_cmd(hub, name, "python", "-m", "autograder", "check", "--json",
                                   f"/home/{name}/{LESSON}/{LESSON}.ipynb")],
                    capture_output=True, text=True, timeout=CHECK_TIMEOUT_S)
            except subprocess.TimeoutExpired:  # counted as failed, at the time it was given
                return time.monotonic() - t0, False
            return time.monotonic() - t0, done.returncode == 0

        with ThreadPoolExecutor(n) as pool:
            checks = list(pool.map(check, learners))
        peaks = [peak_bytes(u) for u in learners]
        return {"n": n, "start": starts, "check": [c[0] for c in checks],
                "ok": sum(c[1] for c in checks), "peaks": [p for p in peaks if p],
                "before": before, "load": os.getloadavg()[0]}
    finally:
        hub.cleanup()


def _ids(name: str) -> tuple[int, int]:
    import pwd

    p = pwd.getpwnam(name)
    return p.pw_uid, p.pw_gid


def _procs_file(name: str) -> str:
    where = cgroup_parent()
    return str(where[0] / name / "cgroup.procs") if where else "/dev/null"


def _as_user_cmd(hub: ClassHub, name: str, *args: str) -> list[str]:
    """The command `hub.as_user` runs, for a caller that wraps it."""
    bridge = hub.hub_dir / "runtime" / "bin"
    python_bin = bridge if bridge.exists() else Path(sys.executable).parent
    return ["runuser", "-u", name, "--", "env", "-i", f"HOME=/home/{name}", f"USER={name}",
            f"PATH={python_bin}:/usr/bin:/bin", "LANG=C.UTF-8", *args]


def write_section(results: list[dict], command: str) -> Path:
    mib = 1 << 20
    lines = [
        "# A class on JupyterHub under load",
        "",
        f"`{command}` on {platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // (1 << 30)} GiB. "
        "N learners start their servers through the hub's REST API at once, then run "
        f"lesson 01's self-check (`python -m autograder check`) at the same moment. "
        "Peak memory is each learner's memory cgroup high-water mark (server + self-check; "
        "it counts the page cache charged to them, such as the libraries read), under "
        "`make hub`'s default cap of 2 GiB each.",
        "",
        "| learners | server start p50 / max (s) | self-check p50 / p95 (s) | checks ok | "
        "peak per learner p50 / max (MiB) | peak, whole class (MiB) | load before / after |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        peaks = r["peaks"]
        peak = (f"{statistics.median(peaks) / mib:.0f} / {max(peaks) / mib:.0f}",
                f"{sum(peaks) / mib:.0f}") if peaks else ("n/a", "n/a")
        lines.append(
            f"| {r['n']} | {statistics.median(r['start']):.1f} / {max(r['start']):.1f} | "
            f"{statistics.median(r['check']):.1f} / {percentile(r['check'], 0.95):.1f} | "
            f"{r['ok']}/{r['n']} | {peak[0]} | {peak[1]} | "
            f"{r['before']:.1f} / {r['load']:.1f} |")
    within = [r["n"] for r in results if percentile(r["check"], 0.95) <= P95_BUDGET_S]
    lines += ["", "Largest N measured with self-check p95 within 60 s: "
              + (f"**{max(within)}**" if within else "none of those measured") + ". "
              "The whole-class peak sums each learner's own high-water mark (an upper bound: "
              "they need not peak together). *Load before / after*: the machine's 1-minute load "
              "average as the row began (each row waits up to "
              f"{QUIET_WAIT_S // 60} minutes for it to fall below {QUIET_LOAD:.0f}; above that, "
              "other work was running and the times are upper bounds) and when its self-checks "
              "ended (everything running on the machine, the class included)."]
    out = ROOT / "benchmarks" / "HUB_LOAD.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 20])
    args = p.parse_args()
    try:
        require_hub()
    except BaseException as exc:  # pytest's Skipped: say why and stop
        print(f"hub_load: {exc}", file=sys.stderr)
        return 2
    # a stopped run still removes its accounts and servers (run_class's finally)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = []
    for n in args.sizes:
        r = run_class(n)
        print(f"N={n}: start p50 {statistics.median(r['start']):.1f} s, check p50 "
              f"{statistics.median(r['check']):.1f} s p95 {percentile(r['check'], 0.95):.1f} s, "
              f"{r['ok']}/{n} ok", flush=True)
        results.append(r)
        # written after each size: a run stopped part-way keeps what it measured
        command = "sudo .venv/bin/python benchmarks/hub_load.py --sizes " + \
            " ".join(str(x["n"]) for x in results)
        print(f"wrote {write_section(results, command)} and {compose()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
