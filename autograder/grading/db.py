"""The gradebook's database: SQLite in the course folder, or a shared PostgreSQL."""

from __future__ import annotations

import functools
import re

_TUNED = False
_ENGINES: dict = {}


def tune_sqlite(wal: bool = False) -> None:
    """SQLite connections of this process wait for a busy gradebook (the main process writes
    while workers read) instead of failing with "database is locked". With ``wal`` (the
    grading run's single writer) the gradebook is put in write-ahead-log mode with
    ``synchronous=NORMAL``: a commit no longer waits for the disk, yet a killed process
    loses nothing it committed (only an OS crash or power cut could drop the last
    commits, never corrupt the file; the run's own journal notices and regrades them).
    :func:`restore_sqlite` puts the file back in nbgrader's usual mode at the end."""
    global _TUNED
    if _TUNED:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _on_connect(dbapi_connection, record):  # noqa: ARG001
        if type(dbapi_connection).__module__.startswith("sqlite3"):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout = 60000")
            if wal:
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.close()

    _TUNED = True


def restore_sqlite(url: str) -> None:
    """Checkpoint the write-ahead log and return to the rollback journal nbgrader uses."""
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()
    if not url.startswith("sqlite:///"):
        return
    import sqlite3

    path = url[len("sqlite:///"):]
    try:
        con = sqlite3.connect(path, timeout=60)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.execute("PRAGMA journal_mode = DELETE")
        con.close()
    except sqlite3.Error:
        pass  # another program has it open: it stays in WAL mode, which nbgrader reads fine


def share_engines() -> None:
    """One SQLAlchemy engine per database URL in this process.

    nbgrader opens a new ``Gradebook`` (and so a new engine) in nearly every preprocessor,
    so every query is compiled afresh; an engine per URL keeps SQLAlchemy's compiled-query
    cache and connection pool across them. Same queries, same transactions.
    """
    import nbgrader.api as api
    from sqlalchemy import create_engine

    if getattr(api.create_engine, "_attnlab_shared", False):
        return

    def shared_engine(url, **kwargs):
        key = (str(url), tuple(sorted(kwargs.items())))
        if key not in _ENGINES:
            _ENGINES[key] = create_engine(url, **kwargs)
        return _ENGINES[key]

    shared_engine._attnlab_shared = True
    api.create_engine = shared_engine
    # nbgrader asks the `alembic` command for its schema version each time it creates a
    # gradebook (a subprocess, ~1 s); the answer cannot change within a run
    api.get_alembic_version = functools.lru_cache(maxsize=1)(api.get_alembic_version)


def normalize_url(url: str) -> str:
    """``postgresql://`` means whichever PostgreSQL driver is installed (SQLAlchemy 2.1
    assumes psycopg 3; the course's test extra installs psycopg2-binary)."""
    if url.startswith(("postgresql://", "postgres://")):
        rest = url.split("://", 1)[1]
        import importlib.util

        if importlib.util.find_spec("psycopg") is None and \
                importlib.util.find_spec("psycopg2") is not None:
            return f"postgresql+psycopg2://{rest}"
        return f"postgresql://{rest}"
    return url


def check_connection(url: str) -> None:
    """Fail early, in one line, when the gradebook cannot be opened."""
    from sqlalchemy import create_engine, text

    from ..course import CourseError

    try:
        engine = create_engine(url)
        with engine.connect() as con:
            con.execute(text("SELECT 1"))
        engine.dispose()
    except ModuleNotFoundError as exc:
        raise CourseError(f"cannot open the gradebook {redact(url)}: the driver is missing "
                          f"({exc.name}; pip install psycopg2-binary)") from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CourseError(f"cannot open the gradebook {redact(url)}: {first}") from None


def redact(url: str) -> str:
    """A database URL fit for printing (no password)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
