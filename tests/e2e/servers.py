"""Real processes for end-to-end tests: daphne and redis-server on loopback ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():  # type: ignore[operator]
                return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not come up within {timeout}s")


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (loopback)
        return bool(response.status == 200)


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A throwaway redis-server; yields its ``redis://`` URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (make system-deps installs it)")
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            LOOPBACK,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def pings() -> bool:
            with socket.create_connection((LOOPBACK, port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")

        wait_until(pings, 10, "redis-server")
        yield f"redis://{LOOPBACK}:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def server_database_url(workdir: Path, name: str) -> str:
    """A fresh database for one server: PostgreSQL when the suite runs on it, else SQLite."""
    base = os.environ.get("DATABASE_URL", "")
    if base.startswith(("postgres://", "postgresql://")):
        import psycopg

        with psycopg.connect(base, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return base.rsplit("/", 1)[0] + "/" + name
    return f"sqlite:///{workdir / name}.sqlite3"


@contextlib.contextmanager
def daphne_server(workdir: Path, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """Migrate a fresh database and serve Pulse with daphne; yields the base URL."""
    port = free_port()
    inherited = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    env = {
        **inherited,
        "DJANGO_SETTINGS_MODULE": "backend.settings",
        "SECRET_KEY": "pulse-e2e-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "DEBUG": "0",
        "DATABASE_URL": server_database_url(workdir, f"pulse_e2e_{port}"),
        "PULSE_CONNECTION_INIT_TIMEOUT_SECONDS": "2",
        **(extra_env or {}),
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    log = (workdir / f"daphne-{port}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", LOOPBACK, "-p", str(port), "asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://{LOOPBACK}:{port}"
    try:
        wait_until(lambda: _http_ok(base + "/healthz"), 30, "daphne")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
