"""The README is a tested document: every example runs as written, in order, on a fresh
server, and any error fails the test.

The rules, block by block (the README's fenced code blocks, in order):

- Fences marked ``graphql`` and ``sh`` are examples; the others (``text``, ``json``:
  sample output) are not run.
- A block whose preceding line is ``<!-- readme-test: skip (reason) -->`` is not run;
  the reason is required, and a marker anywhere else fails. Only for what truly cannot
  run in a test (there is none today).
- An ``sh`` block runs when it calls ``curl``; the others (``make``, ``export``,
  ``manage.py``, starting servers: setup and deployment, which start their own servers
  or change the machine) are skipped by this rule.
- ``graphql`` blocks hold one operation each. Queries and mutations are POSTed to
  ``/graphql/``; an HTTP error, an ``errors`` entry or no ``data`` fails. Subscriptions
  run over ``graphql-transport-ws`` and must get a ``next`` without errors within
  ``SUBSCRIPTION_SECONDS``. Unless a replay has already sent one, the test triggers one
  write (see ``Runner.trigger``) once the server counts the new subscription
  (``pulse_subscriptions_active`` on ``/metrics``, or after ``JOIN_SECONDS``): a
  live-only subscription has something to receive, and one that silently skips what
  comes (a stale cursor) fails.
- Signed in or not: a ``graphql`` block runs with the ``$TOKEN`` that the README's own
  ``sh`` blocks last set (its login step), anonymously before that. This is what GraphiQL
  does too: after the README's ``login`` mutation its session cookie signs in the rest.
- ``sh`` blocks run one after another with ``bash -euo pipefail``; the variables a block
  sets (``TOKEN``, ...) are kept for the blocks after it, and none of them is inherited
  from the test's environment. ``127.0.0.1:8000`` is replaced by the test server's
  address. ``curl`` is wrapped: ``--fail-with-body`` (an HTTP error fails the block), a
  time limit, and every response is checked: a JSON body with GraphQL ``errors`` fails.
  A streaming ``curl -N`` (SSE or multipart) is ended by ``--max-time STREAM_SECONDS``
  (that timeout is its expected end, not an error) and must have carried at least one
  result, with no errors; while it has none, the test triggers one write, as above.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from graphql import FieldNode, OperationDefinitionNode, OperationType, parse

from tests.e2e.clients import TRANSPORT_WS, WSClient, http_gql, sign_up
from tests.e2e.servers import ROOT, DaphneServer, daphne_server

pytestmark = pytest.mark.e2e

README = ROOT / "README.md"
README_ADDRESS = "127.0.0.1:8000"  # what the examples use: `make run`'s default
SUBSCRIPTION_SECONDS = 15.0
STREAM_SECONDS = 5.0
REQUEST_SECONDS = 30.0
JOIN_SECONDS = 2.0  # a subscription is counted by then, or the write goes anyway
POLL_SECONDS = 0.1
EXAMPLE_LANGUAGES = {"graphql", "sh"}
SKIP_MARKER = re.compile(r"<!--\s*readme-test:\s*skip\s*\((?P<reason>[^)]*\S[^)]*)\)\s*-->")
ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=", re.MULTILINE)
CURL_COMMAND = re.compile(r"(^|[\s;|&(]|\$\()curl\s")
SHELL_OWN = {"_", "SHLVL", "PWD", "OLDPWD"}
USERNAMES = count(1)  # the test's own users, unique on the module's server

# `curl`, as the README's sh blocks call it: every call leaves its response, headers and
# arguments in a directory of README_CURLS for the test to check.
CURL_WRAPPER = r"""
curl() {
  local readme_dir readme_arg readme_status=0 readme_stream=0 readme_limit=$README_REQUEST_SECONDS
  readme_dir=$(mktemp -d "$README_CURLS/curl.XXXXXX")
  for readme_arg in "$@"; do
    case $readme_arg in -N | --no-buffer) readme_stream=1 ;; esac
  done
  printf '%s\n' "$*" > "$readme_dir/args"
  if ((readme_stream)); then
    readme_limit=$README_STREAM_SECONDS
    : > "$readme_dir/stream"
  fi
  command curl -sS --fail-with-body --max-time "$readme_limit" -D "$readme_dir/headers" \
    "$@" > "$readme_dir/body" || readme_status=$?
  if ((readme_stream && readme_status == 28)); then readme_status=0; fi  # our time limit
  cat "$readme_dir/body"
  return "$readme_status"
}
"""


@dataclass
class Block:
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    skip: str | None  # the marker's reason

    def __str__(self) -> str:
        return f"README.md:{self.line} ```{self.language}\n{self.text}```"


def fenced_blocks(markdown: str) -> list[Block]:
    """The fenced code blocks of ``markdown``, in order, with their skip markers."""
    blocks: list[Block] = []
    lines = markdown.splitlines(keepends=True)
    opening: tuple[int, str, str | None] | None = None
    body: list[str] = []
    for number, line in enumerate(lines, 1):
        if opening is None:
            if line.startswith("```"):
                previous = lines[number - 2].strip() if number > 1 else ""
                marker = SKIP_MARKER.fullmatch(previous)
                assert marker or "readme-test" not in previous, (
                    f"README.md:{number - 1}: write `<!-- readme-test: skip (reason) -->`"
                )
                opening = (number, line[3:].strip(), marker["reason"] if marker else None)
                body = []
        elif line.rstrip() == "```":
            blocks.append(Block(opening[0], opening[1], "".join(body), opening[2]))
            opening = None
        else:
            body.append(line)
    assert opening is None, f"README.md:{opening[0]}: the block is never closed"
    return blocks


def only_operation(block: Block) -> OperationDefinitionNode:
    operations = [
        node for node in parse(block.text).definitions if isinstance(node, OperationDefinitionNode)
    ]
    assert len(operations) == 1, f"one operation per block, found {len(operations)}: {block}"
    return operations[0]


# Streams (SSE, multipart) as curl saved them ------------------------------------------


def sse_results(body: bytes) -> list[dict[str, Any]]:
    """The ``next`` results of the complete events of an SSE body."""
    text = body.decode().replace("\r\n", "\n")
    results = []
    for event in text.split("\n\n")[:-1]:  # the last one may still be arriving
        fields: dict[str, str] = {}
        for line in event.split("\n"):
            if line and not line.startswith(":"):
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                fields[name] = f"{fields[name]}\n{value}" if name in fields else value
        if fields.get("event") == "next":
            results.append(json.loads(fields["data"]))
        else:
            assert fields.get("event") in {None, "complete"}, f"unexpected SSE event {event!r}"
    return results


def multipart_results(body: bytes) -> list[dict[str, Any]]:
    """The payloads of the complete parts of a multipart body (heartbeats left out)."""
    results = []
    for part in body.split(b"\r\n--graphql")[1:-1]:  # each part is followed by a delimiter
        _, _, content = part.partition(b"\r\n\r\n")
        decoded = json.loads(content)
        assert "errors" not in decoded, f"transport error: {decoded}"
        if decoded != {}:
            results.append(decoded["payload"])
    return results


@dataclass
class CurlCall:
    directory: Path

    @property
    def args(self) -> str:
        return (self.directory / "args").read_text().strip()

    @property
    def streams(self) -> bool:
        return (self.directory / "stream").exists()

    @property
    def content_type(self) -> str:
        headers = self.directory / "headers"  # of every response, redirects included
        text = headers.read_text() if headers.exists() else ""
        found = re.findall(r"(?im)^content-type:\s*(.+?)\s*$", text)
        return found[-1].lower() if found else ""

    def results(self) -> list[dict[str, Any]]:
        body = (self.directory / "body").read_bytes()
        if self.content_type.startswith("text/event-stream"):
            return sse_results(body)
        if self.content_type.startswith("multipart/mixed"):
            return multipart_results(body)
        return []

    def check(self) -> None:
        """Fails on a GraphQL error in the response, or on a stream that carried nothing."""
        where = f"curl {self.args}"
        if self.streams:
            results = self.results()
            assert results, f"{where}: no result within the stream's --max-time"
            for result in results:
                assert "errors" not in result and result.get("data"), f"{where}: {result}"
            return
        if "json" in self.content_type:
            body = json.loads((self.directory / "body").read_bytes())
            assert isinstance(body, dict), f"{where}: {body}"
            assert "errors" not in body, f"{where}: {body}"
            assert body.get("data"), f"{where}: no data: {body}"


def curl_calls(directory: Path) -> list[CurlCall]:
    return [CurlCall(path) for path in sorted(directory.glob("curl.*"))]


# The runner ----------------------------------------------------------------------------


class Runner:
    """Runs README blocks in order against one server, keeping the shell's variables."""

    def __init__(
        self,
        server: DaphneServer,
        workdir: Path,
        subscription_seconds: float = SUBSCRIPTION_SECONDS,
        stream_seconds: float = STREAM_SECONDS,
        inherited_names: set[str] | None = None,
    ) -> None:
        self.base, self.address = server.base, f"127.0.0.1:{server.port}"
        self.workdir = workdir
        self.subscription_seconds, self.stream_seconds = subscription_seconds, stream_seconds
        self.shell_vars: dict[str, str] = {}
        self.inherited_names = inherited_names or set()  # assigned by the README: not inherited
        self.blocks = count(1)
        self.writes = 0
        self.late_writes = 0  # written after JOIN_SECONDS, the join never seen
        self.writer_token: str | None = None
        self.signed_in_as: dict[str, str] = {}  # token -> username

    @property
    def token(self) -> str | None:
        return self.shell_vars.get("TOKEN") or None

    async def run(self, block: Block) -> str:
        """Runs one block; returns how (``"skipped: ..."`` when it is not run)."""
        if block.skip is not None:
            return f"skipped: {block.skip}"
        if block.language == "graphql":
            operation = only_operation(block)
            if operation.operation is OperationType.SUBSCRIPTION:
                await self.subscription(block, operation)
                return "subscription over graphql-transport-ws"
            await asyncio.to_thread(self.http, block)
            return "POST /graphql/"
        if block.language == "sh":
            if not CURL_COMMAND.search(block.text):
                return "skipped: not a curl example"
            await self.sh(block)
            return "bash"
        return "skipped: not an example"

    # graphql blocks

    def http(self, block: Block) -> None:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(  # noqa: S310 (loopback)
            self.base + "/graphql/",
            data=json.dumps({"query": block.text}).encode(),
            headers=headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_SECONDS) as response:  # noqa: S310
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise AssertionError(f"HTTP {error.code} {error.read()!r}: {block}") from error
        assert "errors" not in body and body.get("data"), f"{body}: {block}"

    async def subscription(self, block: Block, operation: OperationDefinitionNode) -> None:
        presence = any(
            isinstance(selection, FieldNode) and selection.name.value == "presence"
            for selection in operation.selection_set.selections
        )
        before = await asyncio.to_thread(self.subscribed)
        client = await WSClient.open(self.base, TRANSPORT_WS, self.token)
        try:
            await client.subscribe("readme", block.text)
            loop = asyncio.get_running_loop()
            joined_by = loop.time() + JOIN_SECONDS
            deadline = loop.time() + self.subscription_seconds
            triggered = False
            while True:
                try:
                    data = await client.next_data(POLL_SECONDS)  # fails on errors
                except TimeoutError:
                    if loop.time() > deadline:
                        raise AssertionError(
                            f"no result within {self.subscription_seconds}s"
                            f" (a write triggered: {triggered}): {block}"
                        ) from None
                    if not triggered and await self.joined(before, joined_by):
                        triggered = True
                        await asyncio.to_thread(self.trigger, presence)
                    continue
                assert data and all(data.values()), f"{data}: {block}"
                return
        finally:
            await client.close()
            await self.until_ended(before)

    # sh blocks

    async def sh(self, block: Block) -> None:
        directory = self.workdir / f"block-{next(self.blocks):02d}-line-{block.line}"
        directory.mkdir()
        env_dump = directory / "env"
        base_env = {
            **{k: v for k, v in os.environ.items() if k not in self.inherited_names},
            **self.shell_vars,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "README_CURLS": str(directory),
            "README_ENV": str(env_dump),
            "README_STREAM_SECONDS": str(self.stream_seconds),
            "README_REQUEST_SECONDS": str(REQUEST_SECONDS),
        }
        script = "\n".join(
            [
                CURL_WRAPPER,
                "trap 'env -0 > \"$README_ENV\"' EXIT",
                "set -a",  # what the block assigns reaches the dump
                block.text.replace(README_ADDRESS, self.address),
            ]
        )
        before = await asyncio.to_thread(self.subscribed)
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-euo",
            "pipefail",
            "-c",
            script,
            cwd=directory,
            env=base_env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its curls can be killed with it
        )
        finished = asyncio.ensure_future(process.communicate())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 4 * REQUEST_SECONDS
        triggered, joined_by = False, None
        while not finished.done():
            await asyncio.wait({finished}, timeout=POLL_SECONDS)
            if finished.done():
                break
            if loop.time() > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                await finished
                raise AssertionError(f"the block did not finish: {block}")
            if triggered or not any(
                call.streams and not self.results_so_far(call) for call in curl_calls(directory)
            ):
                continue
            joined_by = joined_by or loop.time() + JOIN_SECONDS  # from the stream's start
            if await self.joined(before, joined_by):
                triggered = True
                await asyncio.to_thread(self.trigger, False)
        stdout, stderr = finished.result()
        await self.until_ended(before)
        output = f"exit {process.returncode}\nstdout: {stdout.decode()}\nstderr: {stderr.decode()}"
        assert process.returncode == 0, f"{output}\n{block}"
        calls = curl_calls(directory)
        assert calls, f"no curl ran: {block}"
        for call in calls:
            try:
                call.check()
            except AssertionError as error:
                raise AssertionError(f"{error}\n{output}\n{block}") from None
        dumped = dict(
            entry.split("=", 1) for entry in env_dump.read_text().split("\0") if "=" in entry
        )
        self.shell_vars.update(
            {
                name: value
                for name, value in dumped.items()
                if base_env.get(name) != value
                and name not in SHELL_OWN
                and not name.startswith("README_")
            }
        )

    @staticmethod
    def results_so_far(call: CurlCall) -> list[dict[str, Any]]:
        """What a running stream has carried so far (nothing while incomplete)."""
        with contextlib.suppress(Exception):
            return call.results()
        return []

    # what subscriptions receive

    async def joined(self, before: float, joined_by: float) -> bool:
        """Whether to write now: the server counts one more subscription than ``before``,
        or ``joined_by`` has passed."""
        if await asyncio.to_thread(self.subscribed) > before:
            return True
        if asyncio.get_running_loop().time() > joined_by:
            self.late_writes += 1
            return True
        return False

    async def until_ended(self, before: float) -> None:
        """Until the server has ended the subscriptions a block opened, so the next block
        sees its own join in the count."""
        deadline = asyncio.get_running_loop().time() + JOIN_SECONDS
        while await asyncio.to_thread(self.subscribed) > before:
            if asyncio.get_running_loop().time() > deadline:
                return  # only the next block's wait gets longer
            await asyncio.sleep(POLL_SECONDS)

    def subscribed(self) -> float:
        """The live subscriptions the server process counts now."""
        with urllib.request.urlopen(self.base + "/metrics", timeout=REQUEST_SECONDS) as response:  # noqa: S310
            text = response.read().decode()
        found = re.search(r"(?m)^pulse_subscriptions_active (\S+)$", text)
        assert found, "no pulse_subscriptions_active in /metrics"
        return float(found[1])

    def trigger(self, presence: bool) -> None:
        """A write for live subscriptions: a status that mentions the signed-in user (an
        activity and a notification); with ``presence``, also a new user signing in."""
        self.writes += 1
        if presence:
            sign_up(self.base, f"readmeguest{next(USERNAMES)}")
        if self.writer_token is None:
            self.writer_token = sign_up(self.base, f"readmewriter{next(USERNAMES)}")
        status = f"readme test write {self.writes}"
        if self.token:
            if self.token not in self.signed_in_as:
                me = http_gql(self.base, "{ me { username } }", token=self.token)
                self.signed_in_as[self.token] = me["data"]["me"]["username"]
            status += f" for @{self.signed_in_as[self.token]}"
        body = http_gql(
            self.base,
            "mutation($s: String!) { createStatusChange(input: {status: $s}) { id } }",
            {"s": status},
            self.writer_token,
        )
        assert "errors" not in body, body


def assigned_names(blocks: list[Block]) -> set[str]:
    return {
        name
        for block in blocks
        if block.language == "sh"
        for name in ASSIGNMENT.findall(block.text)
    }


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneServer]:
    """A new server on an empty database, as `make run` starts it (``DEBUG=1``)."""
    with daphne_server(tmp_path_factory.mktemp("readme"), env={"DEBUG": "1"}) as server:
        yield server


async def test_every_readme_example_runs_as_written(
    fresh_server: DaphneServer, tmp_path: Path
) -> None:
    blocks = fenced_blocks(README.read_text())
    runner = Runner(fresh_server, tmp_path, inherited_names=assigned_names(blocks))
    outcomes = []
    for block in blocks:
        outcomes.append((block, await runner.run(block)))
        print(f"README.md:{block.line} {block.language}: {outcomes[-1][1]}")  # shown on failure
    examples = [block for block in blocks if block.language in EXAMPLE_LANGUAGES]
    ran = [block for block, how in outcomes if not how.startswith("skipped")]
    graphql = [block for block in examples if block.language == "graphql"]
    print(f"{runner.writes} writes triggered, {runner.late_writes} without seeing the join")
    assert runner.token, "no README block put a token into $TOKEN"
    assert len(graphql) >= 10 and all(block in ran for block in graphql if not block.skip)
    skipped_by_marker = [block for block in examples if block.skip]
    assert len(skipped_by_marker) <= 2, "skips are for what cannot run: keep them rare"


BROKEN_EXAMPLES = [
    # (what is wrong, language, block, what the failure says)
    ("two anonymous operations", "graphql", "{ me { id } }\n{ me { id } }", "one operation"),
    ("an unknown field", "graphql", "{ nope }", "errors"),
    ("signed-in only, anonymously", "graphql", "mutation { markNotificationsRead }", "errors"),
    (
        "a stale cursor skips everything",
        "graphql",
        'subscription { activity(after: "YWN0aXZpdHk6OTk5OTk5") { cursor } }',
        "no result within",
    ),
    (
        "GraphQL errors over curl",
        "sh",
        "curl -s http://127.0.0.1:8000/graphql/ -H 'Content-Type: application/json' \\\n"
        '  -d \'{"query":"{ nope }"}\'',
        "errors",
    ),
    ("an HTTP error", "sh", "curl -s http://127.0.0.1:8000/nowhere/", "exit 22"),
    (
        "an unset variable",
        "sh",
        'curl -s http://127.0.0.1:8000/graphql/ -H "Authorization: Bearer $NO_SUCH_TOKEN" \\\n'
        "  -H 'Content-Type: application/json' -d '{\"query\":\"{ me { id } }\"}'",
        "unbound variable",
    ),
    (
        "a token from a failed login",
        "sh",
        "TOKEN=$(curl -s http://127.0.0.1:8000/graphql/ -H 'Content-Type: application/json' \\\n"
        '  -d \'{"query":"mutation { login(username: \\"nobody\\", password: \\"x\\") { token } }"}\' \\\n'
        '  | python3 -c \'import json,sys; print(json.load(sys.stdin)["data"]["login"]["token"])\')',
        "exit 1",
    ),
    (
        "a stream that skips everything",
        "sh",
        "curl -N 'http://127.0.0.1:8000/graphql/stream?query=subscription%7Bactivity%7Bcursor%7D%7D' \\\n"
        "  -H 'Accept: text/event-stream' -H 'Last-Event-ID: YWN0aXZpdHk6OTk5OTk5'",
        "no result within",
    ),
]


@pytest.mark.parametrize(
    ("language", "text", "failure"),
    [case[1:] for case in BROKEN_EXAMPLES],
    ids=[case[0] for case in BROKEN_EXAMPLES],
)
async def test_a_broken_example_fails(
    fresh_server: DaphneServer, tmp_path: Path, language: str, text: str, failure: str
) -> None:
    runner = Runner(fresh_server, tmp_path, subscription_seconds=3, stream_seconds=3)
    with pytest.raises(AssertionError, match=re.escape(failure)):
        await runner.run(Block(1, language, text + "\n", None))


def test_the_rules_read_the_readme() -> None:
    """Every example is accounted for: the parser sees the fences and the skip markers."""
    blocks = fenced_blocks(
        "text\n\n```sh\nmake run\n```\n<!-- readme-test: skip (deploys) -->\n"
        "```sh\ncurl -s http://127.0.0.1:8000/\n```\n```graphql\n{ me { id } }\n```\n"
    )
    assert [(b.language, b.skip) for b in blocks] == [
        ("sh", None),
        ("sh", "deploys"),
        ("graphql", None),
    ]
    with pytest.raises(AssertionError, match="readme-test"):
        fenced_blocks("<!-- readme-test: skip -->\n```sh\ncurl x\n```\n")
    text = README.read_text()
    readme = fenced_blocks(text)
    assert {block.language for block in readme} >= EXAMPLE_LANGUAGES
    markers = text.count("readme-test")
    assert markers == sum(1 for block in readme if block.skip), "a marker not before a block"
