"""The deployment guide's nginx in front of two daphne processes sharing Redis.

``deploy/nginx.conf`` is used as written, with only what a test cannot have swapped out:
loopback ports instead of 80/443 and no TLS certificate.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest

from tests.e2e.clients import (
    TRANSPORT_WS,
    WSClient,
    ahttp_gql,
    event_stream,
    sign_up,
    subscriptions_active,
    until_subscribed,
)
from tests.e2e.servers import LOOPBACK, ROOT, daphne_server, free_port, new_database, wait_until

pytestmark = pytest.mark.e2e

SITE = ROOT / "deploy" / "nginx.conf"
POST = "mutation($s: String!) { createStatusChange(input: {status: $s}) { id } }"
LIVE = "subscription { activity(kinds: [STATUS_CHANGE]) { message } }"


def site_for_test(upstream_ports: list[int], https_port: int, http_port: int) -> str:
    """``deploy/nginx.conf`` on loopback ports, without TLS."""
    site = SITE.read_text()
    site = re.sub(r"server 127\.0\.0\.1:800\d;\n", "", site)
    servers = "".join(f"    server {LOOPBACK}:{port};\n" for port in upstream_ports)
    site = site.replace("    least_conn;\n", "    least_conn;\n" + servers)
    site = site.replace(
        "    hash $remote_addr consistent;\n", "    hash $remote_addr consistent;\n" + servers
    )
    site = site.replace("listen 80;", f"listen {LOOPBACK}:{http_port};")
    site = site.replace("listen 443 ssl;", f"listen {LOOPBACK}:{https_port};")
    site = re.sub(r"\n\s*(http2 on|ssl_certificate(_key)?\s[^;]*);", "", site)
    return site


class Site(NamedTuple):
    base: str  # the HTTPS server (plain HTTP on loopback)
    plain: str  # the port 80 server, which redirects
    upstreams: tuple[str, ...]  # the daphne processes behind nginx (their own /metrics)


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Site]:
    """nginx balancing over two daphne processes."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(binary).exists(), "nginx is missing: run `make system-deps`"
    workdir = tmp_path_factory.mktemp("nginx")
    database = new_database(os.environ.get("DATABASE_URL", ""), "pulse_nginx", workdir)
    env = {"REDIS_URL": redis_url}
    with (
        daphne_server(workdir, database, env) as first,
        daphne_server(workdir, database, env) as second,
    ):
        https_port, http_port = free_port(), free_port()
        (workdir / "pulse.conf").write_text(
            site_for_test([first.port, second.port], https_port, http_port)
        )
        (workdir / "nginx.conf").write_text(
            f"user root;\nworker_processes 1;\nerror_log {workdir}/error.log;\n"
            f"pid {workdir}/nginx.pid;\nevents {{ worker_connections 1024; }}\n"
            f"http {{\n  access_log off;\n  client_body_temp_path {workdir}/body;\n"
            f"  proxy_temp_path {workdir}/proxy;\n  include {workdir}/pulse.conf;\n}}\n"
        )
        process = subprocess.Popen(
            [binary, "-p", str(workdir), "-c", str(workdir / "nginx.conf"), "-g", "daemon off;"]
        )
        https_base = f"http://{LOOPBACK}:{https_port}"
        try:
            wait_until(lambda: status_of(https_base + "/healthz") == 200, 20, "nginx")
            yield Site(https_base, f"http://{LOOPBACK}:{http_port}", (first.base, second.base))
        finally:
            process.terminate()
            process.wait(10)


def status_of(url: str) -> int | None:
    """The HTTP status of a GET (redirects not followed), or None when nothing answers."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


async def test_subscribers_through_nginx_get_writes_made_through_nginx(nginx: Site) -> None:
    base = nginx.base
    token = await asyncio.to_thread(sign_up, base, "behind_nginx")
    # least_conn spreads the sockets over both processes.
    sockets = [await WSClient.open(base, TRANSPORT_WS) for _ in range(4)]
    active = await subscriptions_active(nginx.upstreams)
    for socket in sockets:
        await socket.subscribe("live", LIVE)
    await until_subscribed(nginx.upstreams, active + len(sockets))  # on either process
    for n in range(3):
        posted = await ahttp_gql(base, POST, {"s": f"via nginx {n}"}, token)
        assert "errors" not in posted, posted
    for socket in sockets:
        messages = [(await socket.next_data())["activity"]["message"] for _ in range(3)]
        assert messages == [f"behind_nginx changed status to 'via nginx {n}'" for n in range(3)]
        await socket.close()


def test_plain_http_redirects_and_metrics_are_not_public(nginx: Site) -> None:
    base, plain = nginx.base, nginx.plain
    assert status_of(plain + "/graphql/") == 301
    assert status_of(base + "/metrics") == 403
    assert status_of(base + "/readyz") == 200
    with urllib.request.urlopen(base + "/readyz", timeout=5) as response:  # noqa: S310
        assert json.loads(response.read())["checks"] == {"database": "ok", "channel_layer": "ok"}


async def test_sse_in_both_modes_through_nginx(nginx: Site) -> None:
    base = nginx.base
    token = await asyncio.to_thread(sign_up, base, "sse_nginx")
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        reserved = await client.put("/graphql/stream", headers=auth)
        assert reserved.status_code == 201
        single = {**auth, "X-GraphQL-Event-Stream-Token": reserved.text}
        active = await subscriptions_active(nginx.upstreams)
        async with (
            event_stream(base, params={"query": LIVE}) as distinct,
            event_stream(base, headers=single) as stream,
        ):
            body = {"query": LIVE, "extensions": {"operationId": "a"}}
            assert (
                await client.post("/graphql/stream", json=body, headers=single)
            ).status_code == 202
            await until_subscribed(nginx.upstreams, active + 2)  # the distinct stream too
            posted = await ahttp_gql(base, POST, {"s": "via nginx sse"}, token)
            assert "errors" not in posted, posted
            expected = "sse_nginx changed status to 'via nginx sse'"
            assert (await distinct.next_data()).data["data"]["activity"]["message"] == expected
            found = (await stream.next_data()).data
            assert (
                found["id"] == "a" and found["payload"]["data"]["activity"]["message"] == expected
            )
