"""BENCHMARKS.md, put together from the sections each benchmark writes under benchmarks/.

Every benchmark script writes its own section (benchmarks/LESSONS.md, CHECK.md,
ATTENTION_MEMORY.md, GRADING.md, HUB_LOAD.md, each naming the command that produced it) and
then calls ``compose()``, so re-running one benchmark never loses the others' results.

    .venv/bin/python benchmarks/report.py     # rebuild BENCHMARKS.md from the sections
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("LESSONS.md", "CHECK.md", "ATTENTION_MEMORY.md", "GRADING.md", "HUB_LOAD.md")


def _demote(text: str) -> str:
    """A section's own headings one level down, under BENCHMARKS.md's title."""
    return "\n".join("#" + line if line.startswith("#") else line
                     for line in text.strip().splitlines())


def compose(out: Path = ROOT / "BENCHMARKS.md") -> Path:
    parts = [(ROOT / "benchmarks" / name) for name in SECTIONS]
    body = "\n\n".join(_demote(p.read_text(encoding="utf-8")) for p in parts if p.exists())
    out.write_text("# Benchmarks\n\nWhat the course promises, measured. Each section names "
                   "the command that produced it; `make bench` re-runs them all.\n\n"
                   + body + "\n", encoding="utf-8")
    return out


if __name__ == "__main__":
    print(f"wrote {compose()}")
