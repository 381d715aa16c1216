"""The labels database of the workspace: who labelled which item how, when, from which query.

SQLAlchemy Core over SQLite by default (a file beside the index folder, WAL journal, `synchronous=FULL`: a label
is on disk before it is acknowledged, so a killed server restarts with every acknowledged label); a
`postgresql://` URL (a team's server; driver psycopg 3, extra `spectraclip[team]`) goes through the same code:
each label is committed before it is acknowledged (PostgreSQL's default `synchronous_commit=on` makes the commit
durable), writes run concurrently on a connection pool, and the table is created under an advisory lock, so
several server processes may start at once. The file sits beside the index folder, not inside it: `index
build`/`add` swap in a fresh folder, which would drop it.

A label is `(item_id, target, label)`: `label` is `positive`/`negative` for a `target` (e.g. "solar farm"), or a
class name with the target left empty (a multi-class probe). The latest label of an item for a target wins:
the one with the highest id. Ids come from one sequence (SQLite: writes serialised; PostgreSQL: a `SERIAL`
sequence, cache 1, so monotonic across connections; it may leave gaps, e.g. after a crash), so a label sent after
another's acknowledgement always has the higher id; of two labels in flight at once, the one that took its id
later wins. A database set to `synchronous_commit=off` is turned back on for the store's sessions.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from spectraclip.errors import SpectraclipError

MAX_FIELD = 200
POSITIVE, NEGATIVE = "positive", "negative"


class LabelError(SpectraclipError, ValueError):
    """A label that cannot be stored (empty or too long fields); the message names the field."""


class LabelDatabaseError(SpectraclipError, RuntimeError):
    """The labels database cannot be used: its driver is not installed, its server cannot be reached, or it
    failed a read or write. The message names the URL (password hidden) and what to do."""


# the driver of `postgresql://` URLs (SQLAlchemy 2.0 would pick psycopg2, which this project does not install)
PG_DRIVER = "psycopg"
PG_INSTALL = "pip install 'spectraclip[team]' (or: pip install 'psycopg[binary]')"
CONNECT_TIMEOUT_S = 5
# pg_advisory_xact_lock key: schema creation of concurrently starting servers, one at a time ("SPECTRLB")
_SCHEMA_LOCK = 0x535045435452_4C42


def normalise_url(url: str | Path) -> str:
    """A SQLAlchemy URL: a path (no `://`) becomes `sqlite:///<absolute path>`; `postgresql://` and
    `postgres://` get the psycopg (3) driver."""
    text = str(url)
    if "://" not in text:
        return f"sqlite:///{Path(text).resolve()}"
    scheme, rest = text.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+{PG_DRIVER}://{rest}"
    return text


def shown_url(url: str) -> str:
    """The URL as error messages show it: the password replaced by ***."""
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL: show its scheme only
        return url.split("://", 1)[0] + "://..."


def _reason(exc: BaseException, url: str) -> str:
    """The driver's first line, without the URL's password should the driver repeat it."""
    import sqlalchemy as sa

    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    try:
        pw = sa.engine.make_url(url).password
    except Exception:  # noqa: BLE001
        pw = None
    return first.replace(str(pw), "***") if pw else first


@dataclass
class Label:
    """One stored label."""

    id: int
    item_id: str
    label: str
    target: str
    who: str
    created: float  # unix seconds
    query: str
    lon: float | None = None
    lat: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_url(index_dir: str | Path) -> str:
    """`sqlite:///<index_dir>.labels.sqlite`: the labels file beside the index folder."""
    p = Path(index_dir).resolve()
    return f"sqlite:///{p.parent / (p.name + '.labels.sqlite')}"


def _clean(value: str | None, name: str, required: bool = False) -> str:
    v = (value or "").strip()
    if required and not v:
        raise LabelError(f"the label's {name} is empty")
    if len(v) > MAX_FIELD:
        raise LabelError(f"the label's {name} has {len(v)} characters (at most {MAX_FIELD})")
    return v


class LabelStore:
    """Labels in a SQL database (`url`: a SQLAlchemy URL or a file path, taken as SQLite).

    Opening connects and creates the table when missing: a database that cannot be used raises
    `LabelDatabaseError` now (naming the URL, password hidden), not at the first label."""

    def __init__(self, url: str | Path) -> None:
        import sqlalchemy as sa

        text = normalise_url(url)
        self.url = text
        self.shown = shown_url(str(url) if "://" in str(url) else text)  # as the user wrote it
        self.sqlite = text.startswith("sqlite")
        self.postgresql = text.startswith("postgres")
        kwargs: dict[str, Any] = {}
        if self.sqlite:
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        elif self.postgresql:
            # a lost server is noticed at checkout (pre-ping), and a connection attempt gives up after 5 s
            kwargs.update(pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
        try:
            self.engine = sa.create_engine(text, **kwargs)
        except ImportError as exc:  # the dialect's driver (psycopg for PostgreSQL) is not installed
            scheme = text.split("://", 1)[0]
            hint = (PG_INSTALL if scheme == f"postgresql+{PG_DRIVER}" else
                    f"install the driver of {scheme}" + (f", or write postgresql:// for psycopg 3: {PG_INSTALL}"
                                                         if self.postgresql else ""))
            raise LabelDatabaseError(f"labels database {self.shown}: its driver is not installed ({exc}); "
                                     f"{hint}") from exc
        except sa.exc.ArgumentError as exc:
            raise LabelDatabaseError(f"labels database {self.shown}: not a database URL ({exc})") from exc
        if self.sqlite:
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(conn: Any, _: Any) -> None:
                cur = conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()
        if self.postgresql:
            @sa.event.listens_for(self.engine, "connect")
            def _durable(conn: Any, _: Any) -> None:
                # a server (or database, or role) set to synchronous_commit=off would acknowledge commits that a
                # crash can lose: this session turns it back on (stronger settings, e.g. remote_apply, are kept)
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute("SHOW synchronous_commit")
                    if cur.fetchone()[0] == "off":
                        cur.execute("SET synchronous_commit TO on")
                conn.autocommit = False
        md = sa.MetaData()
        self.table = sa.Table(
            "labels", md,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("item_id", sa.String(1000), nullable=False, index=True),
            sa.Column("label", sa.String(MAX_FIELD), nullable=False),
            sa.Column("target", sa.String(MAX_FIELD), nullable=False, default="", index=True),
            sa.Column("who", sa.String(MAX_FIELD), nullable=False, default=""),
            sa.Column("created", sa.Float, nullable=False),
            sa.Column("query", sa.String(1000), nullable=False, default=""),
            sa.Column("lon", sa.Float, nullable=True),
            sa.Column("lat", sa.Float, nullable=True),
        )
        self._metadata = md
        with self._guard("open"):
            self._create_schema()
        # SQLite allows one writer: serialise this process' writes (other processes wait on busy_timeout);
        # PostgreSQL takes concurrent inserts, each on its own pooled connection
        self._write = threading.Lock() if self.sqlite else None

    def _create_schema(self) -> None:
        """The table and its indexes, when missing; idempotent, also for servers starting at once."""
        import sqlalchemy as sa

        if self.postgresql:  # DDL is transactional: the second server waits, then finds the table
            with self.engine.begin() as conn:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
                self._metadata.create_all(conn)
            return
        for attempt in range(3):  # another process may create it between the check and the CREATE
            try:
                self._metadata.create_all(self.engine)
                return
            except sa.exc.OperationalError as exc:
                if "already exists" not in str(exc) or attempt == 2:
                    raise
                time.sleep(0.1)

    def _guard(self, what: str) -> Any:
        return _Guard(self, what)

    def add(self, item_id: str, label: str, *, target: str = "", who: str = "", query: str = "",
            lon: float | None = None, lat: float | None = None) -> Label:
        """Store one label (committed, and with SQLite synced to disk, before this returns)."""
        row = {"item_id": _clean(item_id, "item id", True), "label": _clean(label, "label", True),
               "target": _clean(target, "target"), "who": _clean(who, "who"), "created": time.time(),
               "query": (query or "")[:1000], "lon": lon, "lat": lat}
        if row["target"] and row["label"] not in (POSITIVE, NEGATIVE):
            raise LabelError(f"label {row['label']!r} for target {row['target']!r}: expected {POSITIVE!r} or "
                             f"{NEGATIVE!r} (a class name goes without a target)")
        lock = self._write or _NoLock()
        with self._guard("store a label in"), lock, self.engine.begin() as conn:
            new_id = conn.execute(self.table.insert().values(**row)).inserted_primary_key[0]
        return Label(id=int(new_id), **row)

    def all(self, target: str | None = None) -> list[Label]:
        """Every stored label (of one `target` when given; "" = class-name labels), oldest first."""
        import sqlalchemy as sa

        q = sa.select(self.table).order_by(self.table.c.id)
        if target is not None:
            q = q.where(self.table.c.target == target)
        with self._guard("read"), self.engine.connect() as conn:
            return [Label(**dict(r._mapping)) for r in conn.execute(q)]

    def latest(self, target: str | None = None) -> dict[tuple[str, str], Label]:
        """The latest label of each (item, target): what a probe learns from."""
        out: dict[tuple[str, str], Label] = {}
        for lab in self.all(target):
            out[(lab.item_id, lab.target)] = lab
        return out

    def targets(self) -> list[str]:
        import sqlalchemy as sa

        with self._guard("read"), self.engine.connect() as conn:
            return sorted(r[0] for r in conn.execute(sa.select(self.table.c.target).distinct()))

    def count(self) -> int:
        import sqlalchemy as sa

        with self._guard("read"), self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(self.table)).scalar_one())

    def close(self) -> None:
        self.engine.dispose()


class _Guard:
    """Turns the database's connection errors into a `LabelDatabaseError` naming the URL."""

    def __init__(self, store: LabelStore, what: str) -> None:
        self.store, self.what = store, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: Any, exc: BaseException | None, tb: Any) -> bool:
        import sqlalchemy as sa

        if exc is None or not isinstance(exc, sa.exc.DBAPIError | sa.exc.TimeoutError):
            return False
        st = self.store
        if self.what == "open":
            st.engine.dispose()
            hint = (" (is the server running, and the host, port, database, user and password right?)"
                    if st.postgresql else "")
            msg = f"labels database {st.shown} cannot be opened: {_reason(exc, st.url)}{hint}"
        else:
            msg = f"labels database {st.shown}: could not {self.what} it: {_reason(exc, st.url)}"
        raise LabelDatabaseError(msg) from exc


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: Any) -> None:
        return None


def open_store(index_dir: str | Path, url: str | Path | None = None) -> LabelStore:
    """The labels database of `index_dir` (`url` None: the SQLite file beside it)."""
    return LabelStore(url or default_url(index_dir))


def labels_for(store: LabelStore, target: str | None) -> tuple[list[str], list[str]]:
    """(item ids, labels) of the latest labels: `positive`/`negative` for a target, class names for target ''."""
    latest = store.latest("" if not target else target)
    items = [k[0] for k in latest]
    return items, [v.label for v in latest.values()]


__all__ = ["NEGATIVE", "POSITIVE", "Label", "LabelDatabaseError", "LabelError", "LabelStore", "default_url",
           "labels_for", "normalise_url", "open_store", "shown_url"]

