"""``python -m attnlab.workspace LESSONS WORKSPACE``: give a learner their own copies.

Copies every file of the release into the learner's workspace the first time only: a file
that already exists there is the learner's work and is never overwritten (delete it to get
a fresh copy).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def sync(release: Path, workspace: Path) -> list[Path]:
    """Copy files missing from ``workspace``; return the ones copied."""
    if not release.is_dir():
        raise SystemExit(f"error: {release} not found (run from the repository root)")
    copied = []
    for src in sorted(release.rglob("*")):
        if src.is_dir() or ".ipynb_checkpoints" in src.parts:
            continue
        dst = workspace / src.relative_to(release)
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            copied.append(dst)
    return copied


def main(argv: list[str]) -> int:
    release, workspace = (Path(a) for a in (argv + ["lessons", "workspace"])[:2])
    copied = sync(release, workspace)
    kept = sum(1 for p in workspace.rglob("*.ipynb")) - sum(p.suffix == ".ipynb" for p in copied)
    print(f"workspace/: {len(copied)} new file(s) copied; {kept} notebook(s) of yours kept as "
          "they are (delete one to start that lesson afresh).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
