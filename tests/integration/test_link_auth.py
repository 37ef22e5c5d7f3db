"""Who may connect: tokens (query param or phoenix.js subprotocol), origins, vsn; /healthz and
/metrics on the same port."""

import asyncio
import base64
import json
import time

import pytest
from veraltheim.protocol.constants import AUTH_TOKEN_PREFIX, SUBPROTOCOL, VSN
from veraltheim.service.auth import issue_token
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.support.phx_frames import (
    WAIT_S,
    http_get,
    join,
    metric,
    open_socket,
    sign,
)
from tests.support.service import TEST_SECRET, running_service

ORIGIN = "https://app.example"
ENV = {"VERALTHEIM_COMPUTE_WORKERS": "1", "VERALTHEIM_ALLOWED_ORIGINS": ORIGIN}


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("auth"), env=ENV) as s:
        yield s


async def refused(url: str, **kwargs) -> tuple[int, str]:
    with pytest.raises(InvalidStatus) as exc:
        await connect(url, open_timeout=WAIT_S, **kwargs)
    response = exc.value.response
    return response.status_code, response.body.decode()


@pytest.mark.parametrize(
    ("query", "says"),
    [
        (f"vsn={VSN}", "unauthorized: missing token"),
        (f"vsn={VSN}&token=", "unauthorized: missing token"),
        (f"vsn={VSN}&token=garbage", "unauthorized: invalid token"),
        (
            f"vsn={VSN}&token={issue_token('another-secret', 'eve', 600)}",
            "unauthorized: invalid token: bad signature",
        ),
        (
            f"vsn={VSN}&token={issue_token(TEST_SECRET, 'old', 60, now=time.time() - 120)}",
            "unauthorized: token expired",
        ),
    ],
    ids=["missing", "empty", "garbage", "forged", "expired"],
)
async def test_bad_tokens_are_refused_with_403(svc, query, says):
    status, body = await refused(f"{svc.ws_url}?{query}")
    assert status == 403
    assert body.strip() == says or body.startswith(says)


async def test_token_in_phoenix_subprotocol_selects_phoenix(svc):
    encoded = base64.b64encode(sign("sub-user").encode()).decode().rstrip("=")
    ws = await connect(
        f"{svc.ws_url}?vsn={VSN}",
        subprotocols=[SUBPROTOCOL, AUTH_TOKEN_PREFIX + encoded],
        open_timeout=WAIT_S,
    )
    assert ws.subprotocol == SUBPROTOCOL
    assert (await join(ws, payload={"presence": False}))["response"] == {"user": "sub-user"}
    await ws.close()


async def test_forged_token_in_subprotocol_is_refused(svc):
    forged = base64.b64encode(issue_token("nope", "eve", 60).encode()).decode().rstrip("=")
    status, body = await refused(
        f"{svc.ws_url}?vsn={VSN}", subprotocols=[SUBPROTOCOL, AUTH_TOKEN_PREFIX + forged]
    )
    assert status == 403 and "bad signature" in body


async def test_origin_must_be_allowed_when_configured(svc):
    status, body = await refused(
        f"{svc.ws_url}?vsn={VSN}&token={sign('o')}", origin="https://evil.example"
    )
    assert status == 403 and "origin not allowed: https://evil.example" in body
    ws = await open_socket(svc.ws_url, "o", origin=ORIGIN)
    assert (await join(ws, payload={"presence": False}))["status"] == "ok"
    await ws.close()


async def test_unsupported_vsn_is_a_400(svc):
    status, body = await refused(f"{svc.ws_url}?vsn=1.0.0&token={sign('v')}")
    assert status == 400 and "unsupported vsn '1.0.0'" in body


async def test_healthz_reports_sockets_and_channels(svc):
    ws = await open_socket(svc.ws_url, "health")
    await join(ws, payload={"presence": False})
    status, ctype, body = await asyncio.to_thread(http_get, svc.http_url + "/healthz")
    assert status == 200 and ctype.startswith("application/json")
    health = json.loads(body)
    assert health["status"] == "ok"
    assert set(health) >= {"status", "version", "uptime", "sockets", "channels"}
    assert health["sockets"] >= 1 and health["channels"] >= 1 and health["uptime"] > 0
    await ws.close()


async def test_metrics_is_prometheus_text_that_counts_refusals(svc):
    before = (await asyncio.to_thread(http_get, svc.http_url + "/metrics"))[2]
    await refused(f"{svc.ws_url}?vsn={VSN}")
    status, ctype, text = await asyncio.to_thread(http_get, svc.http_url + "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    assert "# TYPE veraltheim_sockets gauge" in text
    series = 'veraltheim_handshakes_refused_total{status="403"}'
    assert metric(text, series) == metric(before, series) + 1


async def test_unknown_paths_are_404(svc):
    status, _, body = await asyncio.to_thread(http_get, svc.http_url + "/nope")
    assert status == 404 and "not found: /nope" in body


async def test_auth_off_accepts_sockets_without_a_token(service_factory):
    svc = service_factory("--no-auth", env={"VERALTHEIM_COMPUTE_WORKERS": "1"})
    ws = await open_socket(svc.ws_url, None, query="user=dev")
    assert (await join(ws, payload={"presence": False}))["response"] == {"user": "dev"}
    await ws.close()
    # The warning names the port really bound (it was --port 0 on the command line).
    assert any("AUTH IS OFF" in line and f":{svc.port} " in line for line in svc.output)
