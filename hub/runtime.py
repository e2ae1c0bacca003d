"""The Python the class's servers run: the project's environment, reachable by every member.

Learners' servers run as their own users, so the environment's interpreter must be
executable by them. A ``.venv`` made from a system Python (``/usr/bin/python3``) is; one
made from a Python inside root's home (pyenv's ``/root/.pyenv``, mode 0700) is not. Then
this module builds a bridge under the hub's folder: a virtual environment of the system's
Python (same minor version) that reads the project's packages through a ``.pth`` file, and
copies of the project's console scripts (jupyterhub-singleuser, nbgrader, alembic, ...)
pointed at it; its share/ and etc/ are the project's. Nothing in the project's
environment is changed.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path


def reachable_by_all(path: Path) -> bool:
    """Whether a user with no special rights can run ``path`` (every folder searchable)."""
    path = path.resolve()
    if not path.stat().st_mode & stat.S_IXOTH:
        return False
    return all(p.stat().st_mode & stat.S_IXOTH for p in path.parents)


def class_python_bin(venv_bin: Path, bridge: Path) -> Path:
    """The bin/ folder whose python and scripts the class's servers use."""
    if reachable_by_all(Path(sys.executable)):
        return venv_bin
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = Path("/usr/bin") / version
    if not (system.exists() and reachable_by_all(system)):
        raise SystemExit(f"the project's Python ({Path(sys.executable).resolve()}) cannot be "
                         f"run by the class's users and there is no {system} to bridge it: "
                         "make .venv from a system Python (make setup PYTHON=/usr/bin/python3)")
    if not (bridge / "bin" / "python").exists():
        subprocess.run([str(system), "-m", "venv", "--without-pip", str(bridge)], check=True)
    site = Path(sysconfig.get_paths()["purelib"])
    bridge_site = bridge / "lib" / version / "site-packages"
    (bridge_site / "attnlab-project.pth").write_text(
        f"import site; site.addsitedir({str(site)!r})\n")
    _copy_scripts(venv_bin, bridge / "bin")
    for name in ("share", "etc"):  # lab extensions, templates, kernels, server extensions
        link = bridge / name
        if not link.is_symlink():
            link.symlink_to(venv_bin.parent / name)
    for folder in (bridge, *bridge.rglob("*")):
        if folder.is_dir():
            os.chmod(folder, 0o755)
    return bridge / "bin"


def _copy_scripts(venv_bin: Path, target: Path) -> None:
    """Console scripts of the project's environment, re-pointed at the bridge's python."""
    prefix = f"#!{venv_bin}/python".encode()
    for script in venv_bin.iterdir():
        if not script.is_file() or script.name.startswith(("python", "activate")):
            continue
        data = script.read_bytes()
        if not data.startswith(prefix):
            continue
        body = data.split(b"\n", 1)[1]
        copy = target / script.name
        copy.write_bytes(f"#!{target / 'python'}\n".encode() + body)
        os.chmod(copy, 0o755)
