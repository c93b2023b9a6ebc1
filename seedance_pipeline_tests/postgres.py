"""A throwaway PostgreSQL server for the tests: a cluster made with `initdb` in a temporary folder,
listening on a free loopback port, with a password (so every PostgreSQL test also carries a secret
that must never be shown). `SEEDANCE_TEST_POSTGRES_URL` points the tests at a server you run
yourself instead; its user must be allowed to create databases. Each test gets its own database."""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import sqlalchemy as sa

POSTGRES_URL_ENV = "SEEDANCE_TEST_POSTGRES_URL"
USER = "seedance"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be found or started; the message says why."""


def server_binaries() -> Path | None:
    """The folder holding `initdb` and `pg_ctl`: on PATH, or Debian's versioned folder (the
    `postgresql` package does not put them on PATH), newest version first."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    return next((p for p in versions if (p / "initdb").exists() and (p / "pg_ctl").exists()), None)


class PostgresServer:
    """A server the tests may create databases on, known by an admin URL (with its password)."""

    def __init__(self, admin_url: sa.URL) -> None:
        self.admin_url = admin_url

    @property
    def password(self) -> str:
        return self.admin_url.password or ""

    @property
    def password_marker(self) -> str:
        """The password's longest alphanumeric run: found in any rendering of it, quoted or not."""
        return max(re.findall(r"[A-Za-z0-9]+", self.password), key=len, default="")

    def url(self, database: str) -> str:
        """A state-store URL for one database, password included (render_as_string hides it by
        default)."""
        return self.admin_url.set(
            drivername="postgresql+psycopg", database=database
        ).render_as_string(hide_password=False)

    def _admin(self) -> psycopg.Connection:
        u = self.admin_url
        return psycopg.connect(host=u.host, port=u.port, user=u.username, password=u.password,
                               dbname=u.database or "postgres", autocommit=True)  # fmt: skip

    def execute(self, sql: str) -> None:
        with self._admin() as conn:
            conn.execute(sql.encode())

    @contextmanager
    def database(self) -> Iterator[str]:
        """A fresh database for one test; dropped afterwards even if connections are left open."""
        name = f"seedance_test_{secrets.token_hex(6)}"
        self.execute(f'CREATE DATABASE "{name}"')
        try:
            yield name
        finally:
            self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def local_cluster(bin_dir: Path) -> Iterator[PostgresServer]:
    """initdb + pg_ctl start in a temporary folder; stopped and removed afterwards. initdb refuses to
    run as root, so as root the cluster belongs to the `postgres` user (made by Debian's package)."""
    as_root = os.geteuid() == 0
    prefix: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="seedance-pg-"))
    data, log, pwfile = folder / "data", folder / "server.log", folder / "pwfile"
    password = f"pw-{secrets.token_hex(12)}:@/"  # characters that must be quoted in a URL
    pwfile.write_text(password + "\n")
    if as_root:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable(
                "running as root, and there is no `postgres` user to own the test cluster "
                "(initdb refuses root); install Debian's postgresql package"
            ) from None
        for path in (folder, pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]

    def run(*args: str) -> None:
        done = subprocess.run(
            [*prefix, *args], cwd=folder, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise PostgresUnavailable(
                f"{Path(args[0]).name} failed ({done.returncode}): {done.stderr.strip()[-2000:]}\n{tail}"
            )

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={pwfile}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale")  # fmt: skip
        # Parallel test workers each start a cluster: another process may take the free port
        # before this server binds it, so a port taken in between is tried again with a new one.
        for attempt in range(3):
            port = free_port()
            options = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={folder} "
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")  # fmt: skip
            try:
                run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")  # fmt: skip
                break
            except PostgresUnavailable as exc:
                if attempt == 2 or "Address already in use" not in str(exc):
                    raise
        try:
            yield PostgresServer(
                sa.URL.create(
                    "postgresql+psycopg",
                    username=USER,
                    password=password,
                    host="127.0.0.1",
                    port=port,
                    database="postgres",
                )
            )
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """The server named by SEEDANCE_TEST_POSTGRES_URL, else a throwaway local cluster. Raises
    PostgresUnavailable with the reason when neither is possible."""
    given = os.environ.get(POSTGRES_URL_ENV)
    if given:
        yield PostgresServer(sa.make_url(given))
        return
    bin_dir = server_binaries()
    if bin_dir is None:
        raise PostgresUnavailable(
            "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in "
            f"/usr/lib/postgresql/*/bin; install them (`apt-get install postgresql`) or set {POSTGRES_URL_ENV}"
        )
    with local_cluster(bin_dir) as server:
        yield server
