"""SQLAlchemy engines that survive long runs: pre-ping and recycle drop dead pooled connections."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError

from studyllm_core.config import ENV_DATABASE_URL
from studyllm_core.db.server import DatabaseTarget, resolve_database
from studyllm_core.errors import DatabaseError, DatabaseUnavailableError
from studyllm_core.logging_config import get_logger
from studyllm_core.redaction import mask_url_password

log = get_logger("db")

POOL_RECYCLE_SECONDS = 1800  # below common idle timeouts of cloud databases and SSL proxies

_engines: dict[str, Engine] = {}
_targets: dict[int, tuple[Engine, DatabaseTarget]] = {}  # id(engine) -> (engine, target) of get_engine's engines
_lock = threading.Lock()


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int = 10) -> Engine:
    """A new engine for `url` with resilient pooling and JSON-safe settings."""
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_recycle=POOL_RECYCLE_SECONDS,
        pool_size=pool_size,
        max_overflow=max_overflow,
        connect_args={"connect_timeout": 10, "application_name": "studyllm"},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001 - SQLAlchemy callback signature
        from pgvector.psycopg import register_vector

        try:
            register_vector(dbapi_conn)
        except Exception:  # noqa: BLE001 - extension not created yet (fresh database before upgrade)
            pass

    return engine


def get_engine(target: DatabaseTarget | None = None) -> Engine:
    """The process-wide engine for the configured database (created and checked on first use)."""
    target = target or resolve_database()
    with _lock:
        engine = _engines.get(target.url)
        if engine is None:
            engine = make_engine(target.url)
            check_connection(engine)
            _engines[target.url] = engine
            _targets[id(engine)] = (engine, target)
        return engine


def check_connection(engine: Engine) -> None:
    """Fail with a one-line message when the server cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        where = mask_url_password(engine.url.render_as_string(hide_password=False))
        raise DatabaseUnavailableError(
            f"cannot connect to {where} ({reason}); check {ENV_DATABASE_URL} or unset it to use the embedded server"
        ) from None


def dispose_engines() -> None:
    """Close every pooled connection (tests, forked workers)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _targets.clear()


@contextmanager
def transaction(engine: Engine, conn: Connection | None = None) -> Iterator[Connection]:
    """The caller's connection (inside its transaction) when given, else a new transaction."""
    if conn is not None:
        yield conn
    else:
        with engine.begin() as new:
            yield new


def driver_sql(conn: Connection, sql: str) -> str:
    """`sql` with `:name` parameters (as CallFilter writes them) in psycopg's `%(name)s` style, for the raw
    driver cursor (binary results, server-side cursors, plain tuples without per-row wrapping)."""
    return str(text(sql).compile(dialect=conn.dialect))


@contextmanager
def translate_db_errors(action: str) -> Iterator[None]:
    """Turn driver errors into one-line `DatabaseError`s naming `action`; nothing is swallowed.

    Covers SQLAlchemy's wrappers and psycopg's own errors (raised where we use the driver's
    cursor directly: COPY, binary fetches, leases).
    """
    try:
        yield
    except (DBAPIError, psycopg.Error) as exc:
        inner = getattr(exc, "orig", None) or exc
        state = getattr(inner, "sqlstate", None) or ""
        if state.startswith("53"):  # 53100 disk full, 53200 out of memory, 53300 too many connections
            what = {"53100": "the database server's disk is full"}.get(state, "the database server is out of resources")
            raise DatabaseError(
                f"{action} failed: {what} ({_first_line(exc)}); free space (or resources) on the server "
                "(the embedded one keeps its data under $STUDYLLM_HOME/pg) and re-run: what was stored is kept"
            ) from exc
        if isinstance(inner, psycopg.InterfaceError) or (
            isinstance(inner, psycopg.OperationalError) and (not state or state.startswith(("08", "57P")))
        ):
            raise DatabaseUnavailableError(f"{action} failed: database unavailable ({_first_line(exc)})") from exc
        raise DatabaseError(f"{action} failed: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip()
    return text.splitlines()[0] if text else type(inner).__name__


_current_schema: set[str] = set()  # URLs whose schema this process already brought up to date


def open_database(*, migrate: bool = True) -> Engine:
    """The engine for the configured database (as the application's role), with the schema brought up to
    date by its owner when `migrate` (checked once per process and URL)."""
    target = resolve_database()
    engine = get_engine(target)
    key = engine.url.render_as_string(hide_password=False)
    if migrate and key not in _current_schema:
        ensure_current_schema(target)
        _current_schema.add(key)
    return engine


def ensure_current_schema(target: DatabaseTarget) -> None:
    """Bring the schema up to date as its owner, granting the application role its privileges.

    Processes that hand the application role's URL to children (`studyllm dev`, `demo`) call this
    first: the children, connecting as that role, cannot migrate.
    """
    from studyllm_core.db.migrate import ensure_schema

    ensure_schema(owner_engine(target), app_role=app_role_of(target))


def owner_engine(target: DatabaseTarget | None = None) -> Engine:
    """The engine of the schema's owner, for migrations and index builds: `target.owner_url`, or the
    application's engine when there is no separate owner (an external server used with one role)."""
    target = target or resolve_database()
    if target.owner_url is None:
        return get_engine(target)
    with _lock:
        engine = _engines.get(target.owner_url)
        if engine is None:
            engine = make_engine(target.owner_url, pool_size=1, max_overflow=2)
            check_connection(engine)
            _engines[target.owner_url] = engine
        return engine


def owner_engine_of(engine: Engine) -> Engine:
    """The schema owner's engine for an engine `open_database`/`get_engine` returned (the embedded server's
    app role cannot build indexes); any other engine is taken as its own owner."""
    with _lock:
        known, target = _targets.get(id(engine), (None, None))
    return owner_engine(target) if known is engine and target is not None else engine


def app_role_of(target: DatabaseTarget) -> str | None:
    """The application's role when the owner is another role (it then gets its privileges), else None."""
    if target.owner_url is None:
        return None
    from sqlalchemy.engine import make_url

    app, owner = make_url(target.url).username, make_url(target.owner_url).username
    return app if app and app != owner else None
