"""The live page and GraphiQL in a real browser (Debian's Chromium) against a real daphne.

Playwright cannot download browsers here: it drives ``/usr/bin/chromium`` (``make
system-deps`` installs it). A missing Chromium fails these tests; it never skips them.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    Request,
    Response,
    WebSocket,
    expect,
    sync_playwright,
)

from tests.e2e.clients import http_gql, sign_up
from tests.e2e.servers import ROOT, DaphneServer, daphne_server

# The in-process channel layer is enough here: Redis fan-out has its own e2e tests.
pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("daphne", ["inmemory"], indirect=True)]

CHROMIUM = os.environ.get("PULSE_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "correct horse 9 battery"  # the one tests.e2e.clients.sign_up uses
TIMEOUT_MS = 15_000
SUBSCRIPTION = "subscription { activity { kind message } }"
POST = "mutation($s: String!) { createStatusChange(input: {status: $s}) { id } }"

PRESENCE_TIMEOUT_SECONDS = 2  # how long a sign-in alone keeps its user online here
SIGNED_IN_ONLY = ("notifications", "unreadNotificationCount", "onlineUsers", "presence")

names = (f"browser{n}" for n in itertools.count())


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium; fails (never skips) when it is not installed."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"Chromium not found at {CHROMIUM}: `make system-deps` installs it")
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        yield chromium
        chromium.close()


class Watched:
    """A browser context recording every request, socket, failure and console error."""

    def __init__(self, browser: Browser, base: str) -> None:
        self.base = base
        self.context: BrowserContext = browser.new_context()
        self.context.set_default_timeout(TIMEOUT_MS)
        self.urls: list[str] = []
        self.problems: list[str] = []
        self.frames_sent: list[dict[str, object]] = []
        self.context.on("request", self._request)
        self.context.on("requestfailed", self._failed)
        self.context.on("response", self._response)
        self.context.on("console", self._console)
        self.context.on("weberror", lambda error: self.problems.append(f"error: {error.error}"))

    def _request(self, request: Request) -> None:
        self.urls.append(request.url)

    def _failed(self, request: Request) -> None:
        self.problems.append(f"failed: {request.url} ({request.failure})")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.url}")

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(f"console: {message.text}")

    def _socket(self, socket: WebSocket) -> None:
        self.urls.append(socket.url)
        socket.on("framesent", self._frame_sent)

    def _frame_sent(self, payload: str | bytes) -> None:
        self.frames_sent.append(json.loads(payload))

    def open(self, path: str) -> Page:
        page = self.context.new_page()
        page.on("websocket", self._socket)
        page.goto(self.base + path)
        return page

    def assert_only_own_origin(self) -> None:
        socket_base = self.base.replace("http", "ws", 1)
        foreign = [
            url for url in self.urls if not url.startswith((self.base + "/", socket_base + "/"))
        ]
        assert self.urls and not foreign, foreign

    def assert_clean(self) -> None:
        self.assert_only_own_origin()
        assert self.problems == []

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def watched(browser: Browser, server: str) -> Iterator[list[Watched]]:
    """Opened browser contexts, closed after the test."""
    opened: list[Watched] = []
    yield opened
    for context in opened:
        print("browser problems:", context.problems)  # shown when the test failed
        context.close()


def new_context(watched: list[Watched], browser: Browser, server: str) -> Watched:
    context = Watched(browser, server)
    watched.append(context)
    return context


def expect_live(page: Page) -> None:
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")


def sign_in(page: Page, username: str) -> None:
    form = page.locator("#sign-in-form")
    form.get_by_label("Username").fill(username)
    form.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#viewer-name")).to_have_text(username)
    expect_live(page)


def sign_up_on_page(page: Page, username: str) -> None:
    page.get_by_text("New here? Create an account").click()
    form = page.locator("#sign-up-form")
    form.get_by_label("Username").fill(username)
    form.get_by_label("Email").fill(f"{username}@example.com")
    form.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account and sign in").click()
    expect(page.locator("#viewer-name")).to_have_text(username)
    expect_live(page)


def post(page: Page, text: str, *, visibility: str = "PUBLIC", kind: str = "Status") -> None:
    page.get_by_role("radio", name=kind).check()
    expect(page.locator("#post-text-label")).to_have_text(kind)
    page.locator("#post-text").fill(text)
    page.get_by_label("Visibility").select_option(visibility)
    page.get_by_role("button", name="Post", exact=True).click()
    expect(page.locator("#post-message")).to_have_text("Posted.")


def test_a_post_on_the_page_appears_live_in_another_browser(
    browser: Browser, server: str, watched: list[Watched]
) -> None:
    alice, bob = next(names), next(names)
    sign_up(server, alice)  # over HTTP; bob signs up on the page
    reader = new_context(watched, browser, server)
    writer = new_context(watched, browser, server)
    alice_page = reader.open("/")
    expect_live(alice_page)
    sign_in(alice_page, alice)
    bob_page = writer.open("/")
    sign_up_on_page(bob_page, bob)

    hostile = "<img src=x onerror=alert(1)> shipping v2"
    post(bob_page, "secret plan", visibility="PRIVATE")
    post(bob_page, hostile)

    public = f"{bob} changed status to '{hostile}'"
    alice_stream = alice_page.locator("#stream .activity-message")
    expect(alice_stream.filter(has_text=public)).to_have_count(1)
    expect(alice_stream.first).to_have_text(public)  # newest on top
    assert alice_page.locator("#stream img").count() == 0  # user text stays text
    assert "secret plan" not in alice_page.locator("#stream").inner_text()
    # Each item shows its author's public stats (the private status is not counted).
    expect(alice_page.locator("#stream .actor-stats").first).to_have_text(
        f"{bob}: 1 status · 0 comments"
    )

    bob_items = bob_page.locator("#stream .activity")
    expect(bob_items.filter(has_text="secret plan").locator(".badge.private")).to_have_count(1)
    expect(bob_items.first).to_contain_text(public)

    # Alice replies to bob's status; the comment reaches bob's stream live.
    alice_page.get_by_role("button", name=f"Reply to: {public}").click()
    expect(alice_page.locator("#reply-text")).to_have_text(public)
    post(alice_page, "congrats!", kind="Comment")
    expect(bob_page.locator("#stream .activity-message").first).to_have_text(
        f"{alice} commented 'congrats!'"
    )

    for context in (reader, writer):
        context.assert_clean()


def test_graphiql_runs_a_subscription_with_local_assets_only(
    browser: Browser, server: str, watched: list[Watched]
) -> None:
    author = next(names)
    sign_up(server, author)
    ide = new_context(watched, browser, server)
    page = ide.open("/graphql/")  # a navigation: Accept names text/html
    expect(page.locator(".graphiql-container")).to_be_visible()
    editor = page.locator(".graphiql-query-editor .CodeMirror")
    expect(editor).to_be_visible()

    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(SUBSCRIPTION)
    # GraphiQL re-reads the operation name 100 ms after an edit (its default query names
    # one); it stores the query at that moment, so wait for that before running.
    page.wait_for_function(
        "query => window.localStorage.getItem('graphiql:query') === query", arg=SUBSCRIPTION
    )
    with page.expect_websocket() as opened:
        page.locator(".graphiql-execute-button").click()
    if not any(frame.get("type") == "subscribe" for frame in ide.frames_sent):
        opened.value.wait_for_event(
            "framesent", lambda payload: json.loads(payload).get("type") == "subscribe"
        )

    poster = new_context(watched, browser, server)
    poster_page = poster.open("/")
    sign_in(poster_page, author)
    result = page.locator(".graphiql-response")
    # The subscription is live only, and its `subscribe` frame may still be on its way
    # to the server: post again (a bounded number of times) until one arrives.
    for attempt in range(5):
        post(poster_page, f"hello from the page {attempt}")
        try:
            expect(result).to_contain_text(f"hello from the page {attempt}", timeout=3_000)
            break
        except AssertionError:
            continue
    else:
        pytest.fail("GraphiQL's subscription received none of the posts")
    expect(result).to_contain_text('"kind": "STATUS_CHANGE"')

    for context in (ide, poster):
        context.assert_clean()


def run_in_graphiql(page: Page, document: str) -> Locator:
    """Type ``document`` into GraphiQL's editor, run it, and return the response pane."""
    editor = page.locator(".graphiql-query-editor .CodeMirror")
    expect(editor).to_be_visible()
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(document)
    page.wait_for_function(
        "query => window.localStorage.getItem('graphiql:query') === query", arg=document
    )
    page.locator(".graphiql-execute-button").click()
    return page.locator(".graphiql-response")


def test_graphiql_runs_a_mutation_right_after_signing_in_on_the_same_page(
    browser: Browser, server: str, watched: list[Watched]
) -> None:
    # Django rotates the CSRF token at login: GraphiQL must send the new one.
    author = next(names)
    sign_up(server, author)
    ide = new_context(watched, browser, server)
    page = ide.open("/graphql/")
    login = f'mutation {{ login(username: "{author}", password: "{PASSWORD}") {{ user {{ username }} }} }}'
    expect(run_in_graphiql(page, login)).to_contain_text(f'"username": "{author}"')
    post = 'mutation { createStatusChange(input: {status: "from GraphiQL"}) { status } }'
    response = run_in_graphiql(page, post)
    expect(response).to_contain_text('"status": "from GraphiQL"')
    expect(response).not_to_contain_text("CSRF")
    ide.assert_clean()


def write_status_offline(daphne: DaphneServer, username: str, status: str) -> None:
    """Post straight to the database while the server is down (a write it will replay)."""
    code = (
        "from django.contrib.auth.models import User; from events import services; "
        f"services.status_change_create(actor=User.objects.get(username={username!r}), "
        f"status={status!r}, visibility='PUBLIC')"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=daphne.env, check=True
    )


def test_the_stream_resumes_from_its_last_cursor_after_a_server_restart(
    browser: Browser, daphne: DaphneServer, server: str, watched: list[Watched]
) -> None:
    author = next(names)
    token = sign_up(server, author)
    viewer = new_context(watched, browser, server)
    page = viewer.open("/")
    expect_live(page)
    http_gql(server, POST, {"s": "before the restart"}, token)
    before = page.locator("#stream .activity").filter(has_text="before the restart")
    expect(before).to_have_count(1)
    last_cursor = before.get_attribute("data-cursor")

    daphne.stop()
    expect(page.locator("#connection")).not_to_have_attribute("data-state", "live")
    write_status_offline(daphne, author, "while the server was down")
    daphne.start()

    expect_live(page)
    http_gql(server, POST, {"s": "after the restart"}, token)
    messages = page.locator("#stream .activity-message")
    expect(messages.first).to_have_text(f"{author} changed status to 'after the restart'")
    for status in ("before the restart", "while the server was down", "after the restart"):
        expect(messages.filter(has_text=f"'{status}'")).to_have_count(1)

    subscribes = [frame for frame in viewer.frames_sent if frame.get("type") == "subscribe"]
    assert len(subscribes) == 2, subscribes
    assert subscribes[-1]["payload"]["variables"] == {"after": last_cursor}  # type: ignore[index]
    # Refused connections while the server was down are expected console errors here.
    viewer.assert_only_own_origin()


SSE_ACTIVITY = "subscription { activity { cursor message } }"


def test_event_source_resumes_by_itself_after_a_server_restart(
    browser: Browser, daphne: DaphneServer, watched: list[Watched]
) -> None:
    """A browser's own ``EventSource`` on ``/graphql/stream``: after the server restarts
    it reconnects with ``Last-Event-ID`` and gets what it missed, once, in order."""
    server = daphne.base
    name = next(names)
    token = sign_up(server, name)
    page = new_context(watched, browser, server).open("/healthz")
    page.evaluate(
        """(query) => {
          window.got = [];
          window.opened = 0;
          const source = new EventSource('/graphql/stream?query=' + encodeURIComponent(query));
          source.onopen = () => { window.opened += 1; };
          source.addEventListener('next', (event) => {
            window.got.push({id: event.lastEventId, data: JSON.parse(event.data)});
          });
        }""",
        SSE_ACTIVITY,
    )
    page.wait_for_function("window.opened === 1")

    def post(status: str) -> None:
        body = http_gql(server, POST, {"s": status}, token)
        assert "errors" not in body, body

    post("one")
    post("two")
    page.wait_for_function("window.got.length === 2")
    daphne.stop()  # SIGTERM: the stream is closed, the process exits
    subprocess.run(  # written while no server runs: only the log has it
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from django.contrib.auth.models import User; from events import services; "
            f"services.status_change_create(actor=User.objects.get(username={name!r}), "
            "status='while down', visibility='PUBLIC')",
        ],
        cwd=ROOT,
        env=daphne.env,
        check=True,
    )
    daphne.start()
    page.wait_for_function("window.opened === 2", timeout=20_000)  # reconnected by itself
    post("three")
    page.wait_for_function("window.got.length === 4", timeout=20_000)
    got = page.evaluate("window.got")
    messages = [item["data"]["data"]["activity"]["message"] for item in got]
    assert messages == [
        f"{name} changed status to '{status}'" for status in ("one", "two", "while down", "three")
    ]
    assert [item["id"] for item in got] == [
        item["data"]["data"]["activity"]["cursor"] for item in got
    ]


def unread_count(page: Page) -> Locator:
    return page.locator("#unread-count")


def online_row(page: Page, username: str) -> Locator:
    return page.locator(f'#online-list .online-user[data-username="{username}"]')


def subscribed_queries(context: Watched) -> list[str]:
    """The documents of every operation the context's pages sent over their sockets."""
    return [
        str(frame["payload"]["query"])  # type: ignore[index]
        for frame in context.frames_sent
        if frame.get("type") == "subscribe"
    ]


def test_an_anonymous_viewer_gets_no_badge_no_presence_and_asks_for_neither(
    browser: Browser, server: str, watched: list[Watched]
) -> None:
    author, viewer = next(names), next(names)
    token = sign_up(server, author)
    sign_up(server, viewer)
    visitor = new_context(watched, browser, server)
    page = visitor.open("/")
    expect_live(page)
    body = http_gql(server, POST, {"s": f"hello @{viewer}"}, token)
    assert "errors" not in body, body
    expect(page.locator("#stream .activity-message").first).to_contain_text(f"hello @{viewer}")

    expect(page.locator("#notifications")).to_be_hidden()
    expect(page.locator("#online")).to_be_hidden()
    anonymous = subscribed_queries(visitor)
    assert len(anonymous) == 1 and "activity(" in anonymous[0], anonymous
    assert not any(name in anonymous[0] for name in SIGNED_IN_ONLY)

    sign_in(page, viewer)  # no reload: the new socket asks for them
    expect(page.locator("#notifications")).to_be_visible()
    expect(unread_count(page)).to_have_text("1")
    expect(online_row(page, viewer)).to_contain_text("(you)")
    signed_in = subscribed_queries(visitor)[1:]
    for name in ("notifications(", "presence {", "unreadNotificationCount", "onlineUsers("):
        assert any(name in query for query in signed_in), (name, signed_in)
    visitor.assert_clean()


def test_the_unread_badge_follows_in_another_tab_when_read(
    browser: Browser, server: str, watched: list[Watched]
) -> None:
    alice, bob = next(names), next(names)
    alice_token = sign_up(server, alice)
    sign_up(server, bob)
    bobs = new_context(watched, browser, server)
    tab1 = bobs.open("/")
    sign_in(tab1, bob)
    tab2 = bobs.open("/")  # the same browser: signed in by the session cookie
    expect(tab2.locator("#viewer-name")).to_have_text(bob)
    expect_live(tab2)
    tabs = (tab1, tab2)
    for tab in tabs:  # the count is read once the socket's subscriptions are sent
        expect(unread_count(tab)).to_have_text("0")

    hostile = f"<img src=x onerror=alert(1)> notes for @{bob}"
    assert "errors" not in http_gql(server, POST, {"s": hostile}, alice_token)
    for tab in tabs:
        expect(unread_count(tab)).to_have_text("1")
        expect(tab.get_by_role("button", name="Notifications 1 unread")).to_be_visible()
    expect(tab1).to_have_title("(1) Pulse · live activity")

    toggle = tab1.locator("#notifications-toggle")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    rows = tab1.locator("#notification-list .notification")
    expect(rows).to_have_count(1)
    first = rows.first
    expect(first.locator(".activity-message")).to_have_text(
        f"{alice} changed status to '{hostile}'"
    )
    expect(first.locator(".badge.kind-mention")).to_have_text("Mention")
    expect(first.locator("time")).not_to_be_empty()
    expect(first).to_have_class(re.compile(r"\bunread\b"))
    assert tab1.locator("#notification-list img").count() == 0  # user text stays text

    # One more while the list is open: prepended, and both badges count it.
    assert "errors" not in http_gql(server, POST, {"s": f"@{bob} one more"}, alice_token)
    expect(rows).to_have_count(2)
    expect(rows.first.locator(".activity-message")).to_have_text(
        f"{alice} changed status to '@{bob} one more'"
    )
    for tab in tabs:
        expect(unread_count(tab)).to_have_text("2")

    tab1.get_by_role("button", name="Mark all read").click()
    expect(tab1.locator("#notification-list .notification.unread")).to_have_count(0)
    for tab in tabs:  # tab 2 follows through its subscription, without a reload
        expect(unread_count(tab)).to_have_text("0")
    expect(tab2).to_have_title("Pulse · live activity")
    tab1.keyboard.press("Escape")
    expect(tab1.locator("#notifications-panel")).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    bobs.assert_clean()


@pytest.fixture(scope="module")
def presence_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A daphne on which a sign-in alone keeps its user online for two seconds only."""
    env = {"PULSE_PRESENCE_TIMEOUT_SECONDS": str(PRESENCE_TIMEOUT_SECONDS)}
    with daphne_server(tmp_path_factory.mktemp("daphne-presence"), env=env) as process:
        yield process.base


def test_online_now_shows_who_opens_the_page_and_drops_who_closes_it(
    browser: Browser, presence_server: str, watched: list[Watched]
) -> None:
    server = presence_server
    alice, bob = next(names), next(names)
    sign_up(server, alice)  # these API sign-ins make them online for the timeout
    sign_up(server, bob)
    bobs = new_context(watched, browser, server)
    bob_page = bobs.open("/")
    sign_in(bob_page, bob)
    expect(online_row(bob_page, bob)).to_contain_text("(you)")
    alice_row = online_row(bob_page, alice)
    # Her API sign-in expires (the wait allows for it: the timeout plus one sweep).
    expect(alice_row).to_have_count(0)

    alices = new_context(watched, browser, server)
    alice_page = alices.open("/")
    sign_in(alice_page, alice)
    expect(alice_row).to_have_count(1)
    expect(alice_row.locator(".online-name")).to_have_attribute(
        "title", f"{alice}: 0 statuses · 0 comments · no posts yet"
    )  # her stats on her name
    expect(alice_row).not_to_contain_text("(you)")
    alice_page.close()  # her sign-in still counts, for the rest of its timeout
    expect(alice_row).to_have_count(0)

    # Still signed in (the session cookie), without signing in again: only her open
    # page keeps her online now, and closing it makes her offline at once.
    alice_page = alices.open("/")
    expect(alice_page.locator("#viewer-name")).to_have_text(alice)
    expect_live(alice_page)
    expect(alice_row).to_have_count(1)
    expect(bob_page.locator("#online-count")).to_have_text("2")
    alice_page.close()
    expect(alice_row).to_have_count(0, timeout=PRESENCE_TIMEOUT_SECONDS * 1000)
    expect(bob_page.locator("#online-count")).to_have_text("1")
    bobs.assert_clean()
