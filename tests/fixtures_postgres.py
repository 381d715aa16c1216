"""A real PostgreSQL server for the labels database tests: Debian's `initdb` + `pg_ctl` into a fresh temporary
folder, listening on 127.0.0.1 at a free port (its unix socket in that folder too), trust authentication,
stopped and removed at the end of the session.

`initdb` refuses to run as root: as root the server runs as the `postgres` system user (Debian's package makes
it), through `runuser` or `setpriv`; otherwise as the current user. Where the binaries, the driver (psycopg) or
that user are missing, or the server does not start, `start_or_skip` skips with the exact reason
(`SPECTRACLIP_REQUIRE_POSTGRES=1` turns the skip into a failure, for a CI that must test PostgreSQL).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

REQUIRE_ENV = "SPECTRACLIP_REQUIRE_POSTGRES"
INSTALL_HINT = "install Debian's `postgresql` package (`make postgres-deps`, run by `make test`)"


class PostgresUnavailable(Exception):
    """Why no server could be started here (the tests skip with this message)."""


def find_bindir() -> Path:
    """The folder of `initdb` and `pg_ctl`: `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass

    def version(p: str) -> float:
        try:
            return float(Path(p).parent.name)
        except ValueError:
            return 0.0

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)]
    for d in candidates:
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file() and (d / "postgres").is_file():
            return d
    raise PostgresUnavailable("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found via "
                              f"`pg_config --bindir` or /usr/lib/postgresql/*/bin: {INSTALL_HINT}")


def _run_as_prefix() -> tuple[list[str], str | None]:
    """(command prefix, user name) to run the server's programs unprivileged: empty when not root."""
    if os.geteuid() != 0:
        return [], None
    import pwd

    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PostgresUnavailable("running as root (initdb refuses root) and there is no `postgres` system user to "
                                  f"run the server as: {INSTALL_HINT}") from exc
    if shutil.which("runuser"):
        return [shutil.which("runuser"), "-u", "postgres", "--"], "postgres"
    if shutil.which("setpriv"):
        return [shutil.which("setpriv"), "--reuid=postgres", "--regid=postgres", "--init-groups"], "postgres"
    raise PostgresUnavailable("running as root (initdb refuses root) and neither `runuser` nor `setpriv` is there "
                              "to run the server as the `postgres` user")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One throw-away cluster: `start()`, `create_database()` -> URL, `crash()` (immediate stop), `stop()`."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.prefix, self.user = _run_as_prefix()
        # not under pytest's tmp folder: /tmp/pytest-of-root is private to root, the `postgres` user could not
        # enter it (and the unix socket's path must stay under ~100 characters)
        self.base = Path(tempfile.mkdtemp(prefix="spectraclip-pg-"))
        if self.user:
            shutil.chown(self.base, self.user, self.user)
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.port = free_port()

    def _cmd(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*self.prefix, *args], capture_output=True, text=True, timeout=timeout,
                              cwd=self.base, env={**os.environ, "LC_ALL": "C", "LANG": "C"})

    def start(self) -> PostgresServer:
        if not self.data.exists():
            out = self._cmd(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                            "-E", "UTF8", "--no-sync")
            if out.returncode != 0:
                raise PostgresUnavailable(f"initdb failed (exit {out.returncode}): {(out.stderr or out.stdout)[-800:]}")
        opts = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c max_connections=200"
        out = self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                        "-o", opts, "start")
        if out.returncode != 0:
            log = self.log.read_text(errors="replace")[-800:] if self.log.exists() else ""
            raise PostgresUnavailable(f"pg_ctl start failed (exit {out.returncode}): {out.stderr[-400:]} {log}")
        return self

    def crash(self) -> None:
        """Stop without a shutdown checkpoint (as a killed server): the next start replays the WAL."""
        self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        if self.data.exists():  # its data is thrown away: no shutdown checkpoint to wait for
            self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database; its URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def start_or_skip() -> PostgresServer:
    """A started server, or `pytest.skip` with the reason (a failure under SPECTRACLIP_REQUIRE_POSTGRES=1)."""
    server = None
    try:
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise PostgresUnavailable("the PostgreSQL driver psycopg is not installed: pip install "
                                      "'spectraclip[team]'") from exc
        server = PostgresServer(find_bindir())
        return server.start()
    except (PostgresUnavailable, OSError, subprocess.SubprocessError) as exc:
        if server is not None:
            server.stop()
        reason = f"no PostgreSQL server for the labels tests: {exc}"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason} ({REQUIRE_ENV}=1)")
        pytest.skip(reason)
