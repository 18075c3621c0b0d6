"""Real processes for end-to-end tests: daphne, redis-server and PostgreSQL on loopback.

Also a command: ``python -m tests.e2e.servers with-postgres CMD...`` runs CMD with
``DATABASE_URL`` pointing at a throwaway PostgreSQL cluster (``make test-postgres``).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
E2E_SECRET_KEY = "pulse-e2e-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not come up within {timeout}s")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (loopback)
        return bool(response.status == 200)


# PostgreSQL ---------------------------------------------------------------------------


def _as_postgres(args: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root.
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """A throwaway cluster from Debian's postgresql; yields the URL of database ``pulse``."""
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not versions:
        raise RuntimeError("PostgreSQL is not installed (make system-deps installs it)")
    bin_dir = Path(versions[-1]).parent
    workdir = Path(tempfile.mkdtemp(prefix="pulse-pg."))
    workdir.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres", "postgres")
    data, port = workdir / "db", free_port()

    def run(args: list[str]) -> None:
        subprocess.run(_as_postgres(args), stdout=subprocess.DEVNULL, check=True)

    try:
        run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ]
        )
        options = (
            f"-h {LOOPBACK} -p {port} -k {workdir} -c fsync=off -c synchronous_commit=off"
            " -c full_page_writes=off -c max_connections=300"
        )
        pg_ctl = str(bin_dir / "pg_ctl")
        run([pg_ctl, "-D", str(data), "-l", str(workdir / "log"), "-w", "-o", options, "start"])
        run([str(bin_dir / "createdb"), "-h", LOOPBACK, "-p", str(port), "-U", "postgres", "pulse"])
        yield f"postgres://postgres@{LOOPBACK}:{port}/pulse"
    finally:
        subprocess.run(
            _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        shutil.rmtree(workdir, ignore_errors=True)


def is_postgres(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://"))


def new_database(base_url: str, name: str, workdir: Path) -> str:
    """A fresh, empty database: on the PostgreSQL server of ``base_url``, else SQLite."""
    if is_postgres(base_url):
        import psycopg

        with psycopg.connect(base_url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return base_url.rsplit("/", 1)[0] + "/" + name
    return f"sqlite:///{workdir / name}.sqlite3"


# Redis --------------------------------------------------------------------------------


class RedisServer:
    """A redis-server on a fixed loopback port that tests may stop and start again."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (make system-deps installs it)")
        self.binary, self.workdir, self.port = binary, workdir, free_port()
        self.url = f"redis://{LOOPBACK}:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                LOOPBACK,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def pings() -> bool:
            with socket.create_connection((LOOPBACK, self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")

        wait_until(pings, 10, "redis-server")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# daphne -------------------------------------------------------------------------------


def redis_namespace(database_url: str) -> str:
    """A Redis namespace of its own for each test database."""
    digest = hashlib.sha256(database_url.encode()).hexdigest()[:12]
    return f"pulse-e2e-{digest}"


class DaphneServer:
    """One Pulse server process on a fixed loopback port; may be killed and restarted."""

    def __init__(
        self,
        workdir: Path,
        database_url: str,
        env: dict[str, str] | None = None,
        plain_daphne: bool = False,
    ):
        self.workdir, self.port = workdir, free_port()
        self.plain_daphne = plain_daphne  # `daphne asgi:application`, as the contract names
        self.base = f"http://{LOOPBACK}:{self.port}"
        inherited = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
        self.env = {
            **inherited,
            "DJANGO_SETTINGS_MODULE": "backend.settings",
            "SECRET_KEY": E2E_SECRET_KEY,
            "DEBUG": "0",
            "DATABASE_URL": database_url,
            "PULSE_CONNECTION_INIT_TIMEOUT_SECONDS": "2",
            # Servers of one database share a namespace in the suite's one Redis, servers
            # of another do not (user ids repeat across databases: presence would mix).
            "PULSE_REDIS_NAMESPACE": redis_namespace(database_url),
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"daphne-{self.port}.log"

    def migrate(self) -> None:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=ROOT,
            env=self.env,
            check=True,
        )

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            command = (
                [str(Path(sys.executable).with_name("daphne"))]
                if self.plain_daphne
                else [sys.executable, "-m", "backend.server"]  # daphne + Pulse's extensions
            )
            self.process = subprocess.Popen(
                [
                    *command,
                    "-b",
                    LOOPBACK,
                    "-p",
                    str(self.port),
                    "asgi:application",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(lambda: http_ok(self.base + "/healthz"), 30, "daphne")

    def stop(self, how: signal.Signals = signal.SIGTERM, timeout: float = 15) -> int | None:
        """Send ``how`` and wait for the process; returns its exit status."""
        if self.process is None:
            return None
        self.process.send_signal(how)
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait(10)
        self.process = None
        return status


@contextlib.contextmanager
def daphne_server(
    workdir: Path,
    database_url: str | None = None,
    env: dict[str, str] | None = None,
    plain_daphne: bool = False,
) -> Iterator[DaphneServer]:
    """Serve Pulse with daphne on a migrated database (a fresh one unless given)."""
    if database_url is None:
        database_url = new_database(
            os.environ.get("DATABASE_URL", ""), f"pulse_e2e_{free_port()}", workdir
        )
    server = DaphneServer(workdir, database_url, env, plain_daphne)
    server.migrate()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "with-postgres":
        print("usage: python -m tests.e2e.servers with-postgres CMD [ARG...]", file=sys.stderr)
        return 2
    with postgres_cluster() as url:
        print(f"PostgreSQL at {url}", file=sys.stderr)
        return subprocess.run(
            argv[1:], env={**os.environ, "DATABASE_URL": url}, check=False
        ).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
