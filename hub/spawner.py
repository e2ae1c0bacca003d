"""JupyterHub's own LocalProcessSpawner, with the course's two kinds of server and a memory cap.

A member's role is their unix group (``attnlab-instructors`` or not), so a roster change
needs no hub restart. Learners get this project's JupyterLab with ``hub/jupyter/learner``
(Validate and the Assignments tab; no formgrader, no create-assignment) in their home;
instructors get ``hub/jupyter/instructor`` (formgrader, create-assignment) in the course
folder. ``Spawner.mem_limit`` is enforced with the kernel's memory cgroup (v2, or v1's
``memory`` controller), which LocalProcessSpawner on its own ignores: the server and every
kernel it starts share one cap, and the kernel's OOM killer stops the one that exceeds it.
"""

from __future__ import annotations

import grp
import os
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Unicode

HUB = Path(__file__).resolve().parent
INSTRUCTORS = "attnlab-instructors"


def cgroup_parent() -> tuple[Path, str] | None:
    """Where per-learner memory cgroups can be made: (folder, limit file), or None."""
    controllers = Path("/sys/fs/cgroup/cgroup.controllers")
    if controllers.exists() and "memory" in controllers.read_text().split():
        return controllers.parent / "attnlab", "memory.max"
    v1 = Path("/sys/fs/cgroup/memory")
    if (v1 / "memory.limit_in_bytes").exists():
        return v1 / "attnlab", "memory.limit_in_bytes"
    return None


class ClassSpawner(LocalProcessSpawner):
    """One course's servers: learner or instructor JupyterLab, each under a memory cgroup."""

    course_dir = Unicode(help="the course folder (nbgrader's CourseDirectory.root)").tag(
        config=True)
    exchange_dir = Unicode(help="nbgrader's Exchange.root").tag(config=True)

    @property
    def role(self) -> str:
        return "instructor" if self.user.name in grp.getgrnam(INSTRUCTORS).gr_mem \
            else "learner"

    def get_env(self) -> dict:
        env = super().get_env()
        venv_bin = str(Path(self.cmd[0]).parent)
        env.update({
            "JUPYTER_CONFIG_PATH": str(HUB / "jupyter" / self.role),
            "ATTNLAB_COURSE_DIR": self.course_dir,
            "ATTNLAB_EXCHANGE": self.exchange_dir,
            # kernels, nbgrader (and the alembic it calls) from the project's environment
            "PATH": venv_bin + os.pathsep + env.get("PATH", "/usr/bin:/bin"),
        })
        if self.role == "instructor":  # as make instructor: formgrader's MathJax served locally
            env["JUPYTER_PATH"] = str(HUB.parent / "etc" / "jupyter" / "instructor" / "data")
        return env

    async def start(self):
        if self.role == "instructor":
            self.notebook_dir = self.course_dir
        self._cgroup = self._make_cgroup()
        return await super().start()

    def _make_cgroup(self) -> Path | None:
        where = cgroup_parent()
        if not self.mem_limit or where is None:
            if self.mem_limit:
                self.log.warning("no memory cgroup on this machine: %s runs without a "
                                 "memory cap", self.user.name)
            return None
        parent, limit_file = where
        parent.mkdir(exist_ok=True)
        group = parent / self.user.name
        group.mkdir(exist_ok=True)
        (group / limit_file).write_text(str(int(self.mem_limit)))
        return group

    def make_preexec_fn(self, name):
        become_user = super().make_preexec_fn(name)
        procs = str(self._cgroup / "cgroup.procs") if self._cgroup else None
        umask = 0o007 if self.role == "instructor" else 0o077

        def preexec():
            if procs:  # as root, before the user change: join the member's cgroup
                with open(procs, "w") as fh:
                    fh.write(str(os.getpid()))
            os.umask(umask)  # instructors share the course folder; a learner shares nothing
            become_user()

        return preexec
