"""``tail_activity`` as a real process on a SQLite file, following another process's writes.

No Redis and no network: the stored log alone carries the activity from one process to
the other.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file to copy, so each test starts from an empty log."""
    path = tmp_path_factory.mktemp("tail") / "template.sqlite3"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=process_env(path),
        check=True,
        timeout=120,
    )
    return path


@pytest.fixture
def sqlite_env(migrated_sqlite: Path, tmp_path: Path) -> dict[str, str]:
    database = tmp_path / "db.sqlite3"
    shutil.copy(migrated_sqlite, database)
    return process_env(database)


def process_env(database: Path) -> dict[str, str]:
    # No REDIS_URL: the log alone must carry it. No PYTHONUNBUFFERED: a pipe, as in a shell.
    unwanted = {"REDIS_URL", "DATABASE_URL", "PYTHONUNBUFFERED"}
    env = {k: v for k, v in os.environ.items() if k not in unwanted}
    env.update(
        DATABASE_URL=f"sqlite:///{database}",
        DJANGO_SETTINGS_MODULE="tests.settings",
    )
    return env


class Lines:
    """The lines a process writes to one pipe, read by a thread, awaited with a deadline."""

    def __init__(self, pipe: IO[str]) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(pipe,), daemon=True).start()

    def _read(self, pipe: IO[str]) -> None:
        for text in pipe:
            self._queue.put(text.rstrip("\n"))

    def next(self, timeout: float = 30) -> str:
        try:
            text = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout} s after {self.seen!r}") from None
        self.seen.append(text)
        return text

    def take(self, count: int, timeout: float = 30) -> list[str]:
        return [self.next(timeout) for _ in range(count)]


def _interruptible() -> None:
    """Give the child SIGINT's default handling (runs in the child before exec)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def start_tail(sqlite_env: dict[str, str]) -> Iterator[Any]:
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> tuple[subprocess.Popen[str], Lines, Lines]:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "tail_activity", "--interval", "0.1", *args],
            cwd=ROOT,
            env=sqlite_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # As a terminal starts it: Ctrl-C interrupts, even when this suite runs where
            # SIGINT is ignored (a background job, nohup, some CI runners), which a child
            # would otherwise inherit.
            preexec_fn=_interruptible,
        )
        started.append(process)
        out, err = Lines(process.stdout), Lines(process.stderr)  # type: ignore[arg-type]
        assert err.next().startswith("Following the activity log after ")
        return process, out, err

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def seed(env: dict[str, str], seed: int) -> None:
    """One user and two events (three activities), from another process."""
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "seed_demo",
            "--users",
            "1",
            "--events",
            "2",
            "--seed",
            str(seed),
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_tail_process_follows_writes_from_another_process(
    start_tail: Any, sqlite_env: dict[str, str]
) -> None:
    tail, out, _ = start_tail("--limit", "6", "--include-private")
    seed(sqlite_env, 1)
    first = out.take(3)  # printed before the next write exists: it follows live
    seed(sqlite_env, 2)
    second = out.take(3)
    assert tail.wait(timeout=30) == 0

    kinds = [text.split("\t")[2] for text in first + second]
    assert kinds[0] == kinds[3] == "USER_JOINED"
    whole_log = subprocess.run(
        [sys.executable, "manage.py", "tail_activity", "--once", "--include-private"],
        cwd=ROOT,
        env=sqlite_env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert whole_log.stdout.splitlines() == first + second


def test_tail_process_exits_cleanly_on_ctrl_c_with_its_resume_cursor(
    start_tail: Any, sqlite_env: dict[str, str]
) -> None:
    tail, out, err = start_tail("--new", "--include-private")
    seed(sqlite_env, 1)
    printed = out.take(3)
    tail.send_signal(signal.SIGINT)
    assert tail.wait(timeout=30) == 0
    rest = err.take(1)
    assert rest == [f"last cursor: {printed[-1].split(chr(9))[0]}"]
