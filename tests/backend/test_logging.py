"""Structured logs, in process: JSON lines, per-task ids that never leak, no secrets."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from channels.testing import WebsocketCommunicator
from structlog.stdlib import ProcessorFormatter

from asgi import application
from backend import logconfig
from schema.live.engine import get_engine
from schema.schema import schema
from tests.backend.test_metrics import asgi_get
from tests.backend.test_production_settings import run_django
from tests.schema.live_sinks import SMALL, RecordingSink, subscribe

JsonLines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def json_lines() -> Iterator[JsonLines]:
    """What the root logger writes, rendered by Pulse's JSON formatter, one dict a line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    config = logconfig.logging_config("json", "INFO")["formatters"]["structured"]
    handler.setFormatter(ProcessorFormatter(**{k: v for k, v in config.items() if k != "()"}))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)


def test_a_stdlib_line_is_one_json_object_with_context_and_no_secrets(
    json_lines: JsonLines,
) -> None:
    class Request:
        method, path = "POST", "/graphql/"

    with structlog.contextvars.bound_contextvars(request_id="r-1", user_id=7):
        logging.getLogger("pulse.test").warning(
            "hello %s",
            "world",
            extra={
                "authorization": "Bearer abc",
                "password": "hunter2",
                "session_key": "s3cr3t",
                "request": Request(),
                "status_code": 403,
            },
        )
    (line,) = json_lines()
    assert line["event"] == "hello world"
    assert line["level"] == "warning"
    assert line["logger"] == "pulse.test"
    assert line["timestamp"].endswith("Z")
    assert (line["request_id"], line["user_id"]) == ("r-1", 7)
    assert line["authorization"] == line["password"] == line["session_key"] == "[redacted]"
    assert line["request"] == "POST /graphql/"
    assert line["status_code"] == 403
    assert not {"abc", "hunter2", "s3cr3t"} & set(map(str, line.values()))


def test_an_exception_stays_on_one_line(json_lines: JsonLines) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("pulse.test").exception("failed")
    (line,) = json_lines()
    assert line["level"] == "error"
    assert "ValueError: boom" in line["exception"]


async def test_concurrent_tasks_keep_their_own_ids(json_lines: JsonLines) -> None:
    async def connection(connection_id: str) -> None:
        structlog.contextvars.bind_contextvars(connection_id=connection_id)
        for _ in range(3):
            logging.getLogger("pulse.test").info("tick")
            await asyncio.sleep(0)

    await asyncio.gather(*(asyncio.create_task(connection(f"c-{n}")) for n in range(3)))
    logging.getLogger("pulse.test").info("outside")
    lines = json_lines()
    assert sorted(line.get("connection_id", "-") for line in lines) == [
        *["-"],
        *["c-0"] * 3,
        *["c-1"] * 3,
        *["c-2"] * 3,
    ]


@pytest.mark.django_db(transaction=True)
async def test_each_socket_logs_with_its_own_connection_id(json_lines: JsonLines) -> None:
    sockets = []
    for n in range(2):
        communicator = WebsocketCommunicator(
            application, "/graphql/", subprotocols=["graphql-transport-ws"]
        )
        # What Pulse's server puts in the scope (backend.server.create_application).
        communicator.scope["extensions"] = {
            logconfig.LOG_CONTEXT_EXTENSION: {"connection_id": f"server-id-{n}"}
        }
        connected, _ = await communicator.connect()
        assert connected
        sockets.append(communicator)
    try:
        for communicator in sockets:
            await communicator.send_to(text_data='{"type": "connection_init"}')
            assert json.loads(await communicator.receive_from())["type"] == "connection_ack"
    finally:
        for communicator in sockets:
            await communicator.disconnect()
    inits = [line for line in json_lines() if line["event"] == "websocket_connection_init"]
    assert [(line["connection_id"], line["user_id"]) for line in inits] == [
        ("server-id-0", None),
        ("server-id-1", None),
    ]
    assert "connection_id" not in structlog.contextvars.get_contextvars()


@pytest.mark.django_db(transaction=True)
async def test_the_log_listener_does_not_inherit_its_first_subscribers_context() -> None:
    engine = get_engine(schema)
    listener = engine.listener
    seen: list[dict[str, Any]] = []
    catch_up = listener.catch_up

    async def recording() -> None:
        seen.append(structlog.contextvars.get_contextvars())
        await catch_up()

    listener.catch_up = recording  # type: ignore[method-assign]
    with structlog.contextvars.bound_contextvars(connection_id="first", user_id=1):
        subscriber = await subscribe(engine, RecordingSink(), SMALL)  # starts the listener
    try:
        async with asyncio.timeout(5):
            while not seen:
                await asyncio.sleep(0.01)
    finally:
        assert subscriber is not None
        engine.end(subscriber)
    assert seen[0] == {}


@pytest.mark.django_db
async def test_request_lines_carry_the_servers_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    extensions = {logconfig.LOG_CONTEXT_EXTENSION: {"request_id": "server-request-id"}}
    with caplog.at_level(logging.DEBUG):  # request_started is a DEBUG line
        status, _, _ = await asgi_get(
            "/healthz?token=secret",
            extensions=extensions,
            # Not trusted: the address is the one daphne gives (its --proxy-headers).
            headers=[(b"host", b"localhost"), (b"x-forwarded-for", b"203.0.113.7")],
        )
    assert status == 200
    events = [r.msg for r in caplog.records if isinstance(r.msg, dict)]
    started = next(e for e in events if e["event"] == "request_started")
    finished = next(e for e in events if e["event"] == "request_finished")
    assert started["request_id"] == finished["request_id"] == "server-request-id"
    assert started["request"] == "GET /healthz"  # never the query string
    assert "user_id" in finished
    assert started["ip"] == finished["ip"] == "10.9.9.9"  # the scope's client
    assert [r.levelno for r in caplog.records if r.msg is started] == [logging.DEBUG]
    assert [r.levelno for r in caplog.records if r.msg is finished] == [logging.INFO]


def test_log_format_follows_debug_unless_set() -> None:
    def log_format(env: dict[str, str]) -> str:
        code = "from django.conf import settings; print(settings.LOG_FORMAT)"
        return run_django(env, "shell", "--no-imports", "-c", code).stdout.strip()

    secret = {"SECRET_KEY": "x" * 50}
    assert log_format(secret) == "json"
    assert log_format({"DEBUG": "1"}) == "console"
    assert log_format({"DEBUG": "1", "LOG_FORMAT": "json"}) == "json"
    refused = run_django({**secret, "LOG_FORMAT": "xml"}, "check")
    assert refused.returncode != 0
    assert "LOG_FORMAT must be json or console" in refused.stderr


def test_a_management_command_logs_json_to_stderr() -> None:
    code = "import logging; logging.getLogger('pulse.cmd').warning('hi', extra={'token': 't0k'})"
    env = {"SECRET_KEY": "x" * 50, "LOG_LEVEL": "info"}
    result = run_django(env, "shell", "--no-imports", "-c", code)
    (line,) = [json.loads(text) for text in result.stderr.splitlines()]
    assert (line["event"], line["logger"], line["level"], line["token"]) == (
        "hi",
        "pulse.cmd",
        "warning",
        "[redacted]",
    )


def test_console_tracebacks_show_no_local_variables() -> None:
    config = logconfig.logging_config("console", "INFO")["formatters"]["structured"]
    formatter = ProcessorFormatter(**{k: v for k, v in config.items() if k != "()"})
    try:
        token = "s3cr3t-" + str(41 + 1)  # noqa: F841 (a local the traceback must not show)
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("pulse.test").makeRecord(
            "pulse.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    text = formatter.format(record)
    assert "ValueError" in text
    assert "s3cr3t-42" not in text


POST_STATUS = 'mutation { createStatusChange(input: {status: "hi"}) { id } }'


def graphql_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith(("strawberry", "schema", "graphql"))]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "code"),
    [
        (POST_STATUS, "UNAUTHENTICATED"),
        ("{ user(id: 1) { username } }", None),
        ('mutation { login(username: "nobody", password: "x") { token } }', "UNAUTHENTICATED"),
        ("{ notifications(first: 1000) { totalCount } }", "UNAUTHENTICATED"),
        ("{ nope }", "GRAPHQL_VALIDATION_FAILED"),
    ],
)
def test_a_client_error_is_one_line_with_its_code_and_no_traceback(
    caplog: pytest.LogCaptureFixture, query: str, code: str | None
) -> None:
    from django.test import Client

    from tests.helpers import gql

    with caplog.at_level(logging.INFO):
        gql(Client(), query)
    records = graphql_records(caplog)
    assert [r.exc_info for r in records if r.exc_info] == []
    expected = [] if code is None else [code]
    assert [getattr(r, "code", None) for r in records] == expected
    assert all(r.getMessage() == "graphql_client_error" for r in records)


@pytest.mark.django_db
def test_an_internal_error_keeps_its_traceback(
    caplog: pytest.LogCaptureFixture, alice_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.test import Client

    from events import services
    from tests.helpers import error_codes, gql

    def broken(**_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(services, "status_change_create", broken)
    with caplog.at_level(logging.INFO):
        body = gql(Client(), POST_STATUS, token=alice_token)
    assert error_codes(body) == ["INTERNAL"]
    faults = [r for r in graphql_records(caplog) if r.exc_info]
    assert len(faults) == 1
    exc_info = faults[0].exc_info
    assert exc_info is not None and "a bug" in str(exc_info[1])
