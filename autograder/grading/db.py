"""The gradebook's database: SQLite in the course folder, or a shared PostgreSQL."""

from __future__ import annotations

import functools
import json
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
    forget_engines()
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


def forget_engines() -> None:
    """Close the shared engines and forget what they knew (a run's start and end: a
    gradebook deleted or replaced between two runs in one process is set up again)."""
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()
    _READY.clear()


def share_engines() -> None:
    """One SQLAlchemy engine per database URL in this process, and no repeated set-up.

    nbgrader opens a new ``Gradebook`` (and so a new engine) in nearly every preprocessor,
    so every query is compiled afresh; an engine per URL keeps SQLAlchemy's compiled-query
    cache and connection pool across them. Same queries, same transactions. Three checks
    nbgrader repeats at each of these openings are done once per engine instead:

    * the schema: ``Gradebook()`` lists the tables and runs ``create_all`` (a query per
      table) every time; once it has succeeded on an engine the tables exist, and it is
      skipped for the next ``Gradebook()`` on that engine (the course row too, which the
      first one made sure of);
    * the alembic version a new gradebook is stamped with: nbgrader runs the ``alembic``
      command for it (a subprocess that imports alembic again for every new gradebook); it is
      read from nbgrader's migration scripts in this process, the same head revision;
    * nbgrader's cell-metadata check validates each cell against its JSON schema with
      ``jsonschema.validate``, which first checks the schema itself (a fixed file); the
      validator is made once per schema, the cells are validated as before.
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
    # the answer cannot change within a run
    api.get_alembic_version = functools.lru_cache(maxsize=1)(alembic_head)
    _schema_once(api)
    _validate_once()


_READY: set = set()  # (engine id, course id): schema and course row known to be there


def _schema_once(api) -> None:
    from sqlalchemy.orm import scoped_session, sessionmaker

    original = api.Gradebook.__init__

    def init(self, db_url, course_id="default_course", authenticator=None):
        engine = api.create_engine(db_url, echo=False, future=True)
        key = (id(engine), course_id)
        if key not in _READY:
            original(self, db_url, course_id, authenticator)
            _READY.add(key)
            return
        self.engine = engine
        self.db = scoped_session(sessionmaker(autoflush=True, bind=engine, future=True))
        self.course_id = course_id
        self.authenticator = authenticator

    api.Gradebook.__init__ = init


def alembic_head() -> str:
    """The revision ``alembic heads`` prints first for nbgrader's migration scripts (what
    nbgrader stamps a new gradebook with), read in this process; the command if that fails."""
    try:
        from alembic.config import Config
        from alembic.script import ScriptDirectory
        from nbgrader.dbutil import ALEMBIC_DIR

        config = Config()
        config.set_main_option("script_location", ALEMBIC_DIR)
        heads = ScriptDirectory.from_config(config).get_heads()
        if len(heads) == 1:
            return heads[0]
    except Exception:  # noqa: BLE001  (nbgrader's own way below)
        pass
    return _alembic_command()


def _alembic_command() -> str:
    """nbgrader's own way (api.get_alembic_version): ask the ``alembic`` command."""
    import subprocess

    from nbgrader.dbutil import _temp_alembic_ini

    with _temp_alembic_ini("sqlite:////tmp/gradebook.db") as ini:
        output = subprocess.check_output(["alembic", "-c", ini, "heads"])
    return output.decode().split("\n")[0].split(" ")[0]


def _validate_once() -> None:
    import types

    import jsonschema
    from jsonschema import exceptions, validators
    from nbgrader.nbgraderformat import common

    made: dict[str, object] = {}  # the schema's text -> its checked validator

    def validate(instance, schema, cls=None, *args, **kwargs):
        if cls is not None or args or kwargs:
            return jsonschema.validate(instance, schema, cls, *args, **kwargs)
        key = json.dumps(schema, sort_keys=True)
        if key not in made:
            kind = validators.validator_for(schema)
            kind.check_schema(schema)
            made[key] = kind(schema)
        error = exceptions.best_match(made[key].iter_errors(instance))
        if error is not None:
            raise error

    common.jsonschema = types.SimpleNamespace(validate=validate)


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
