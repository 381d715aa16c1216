"""The labels database of the workspace: who labelled which item how, when, from which query.

SQLAlchemy Core over SQLite by default (a file beside the index folder, WAL journal, `synchronous=FULL`: a label
is on disk before it is acknowledged, so a killed server restarts with every acknowledged label); a
`postgresql://` URL works through the same code. The file sits beside the index folder, not inside it: `index
build`/`add` swap in a fresh folder, which would drop it.

A label is `(item_id, target, label)`: `label` is `positive`/`negative` for a `target` (e.g. "solar farm"), or a
class name with the target left empty (a multi-class probe). The latest label of an item for a target wins.
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
    """Labels in a SQL database (`url`: a SQLAlchemy URL or a file path, taken as SQLite)."""

    def __init__(self, url: str | Path) -> None:
        import sqlalchemy as sa

        text = str(url)
        if "://" not in text:
            text = f"sqlite:///{Path(text).resolve()}"
        self.url = text
        self.sqlite = text.startswith("sqlite")
        kwargs: dict[str, Any] = {"future": True}
        if self.sqlite:
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        self.engine = sa.create_engine(text, **kwargs)
        if self.sqlite:
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(conn: Any, _: Any) -> None:
                cur = conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()
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
        md.create_all(self.engine)
        # SQLite allows one writer: serialise this process' writes (other processes wait on busy_timeout)
        self._write = threading.Lock() if self.sqlite else None

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
        with lock, self.engine.begin() as conn:
            new_id = conn.execute(self.table.insert().values(**row)).inserted_primary_key[0]
        return Label(id=int(new_id), **row)

    def all(self, target: str | None = None) -> list[Label]:
        """Every stored label (of one `target` when given; "" = class-name labels), oldest first."""
        import sqlalchemy as sa

        q = sa.select(self.table).order_by(self.table.c.id)
        if target is not None:
            q = q.where(self.table.c.target == target)
        with self.engine.connect() as conn:
            return [Label(**dict(r._mapping)) for r in conn.execute(q)]

    def latest(self, target: str | None = None) -> dict[tuple[str, str], Label]:
        """The latest label of each (item, target): what a probe learns from."""
        out: dict[tuple[str, str], Label] = {}
        for lab in self.all(target):
            out[(lab.item_id, lab.target)] = lab
        return out

    def targets(self) -> list[str]:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            return sorted(r[0] for r in conn.execute(sa.select(self.table.c.target).distinct()))

    def count(self) -> int:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(self.table)).scalar_one())

    def close(self) -> None:
        self.engine.dispose()


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


__all__ = ["NEGATIVE", "POSITIVE", "Label", "LabelError", "LabelStore", "default_url", "labels_for", "open_store"]

