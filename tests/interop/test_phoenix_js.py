"""The official phoenix npm client (1.8, under Node with `ws`) against the real service."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "phoenix_client.js"
NODE = shutil.which("node")
NODE_TIMEOUT_S = 60

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        NODE is None, reason="node is not installed (scripts/bootstrap.sh installs it)"
    ),
]


def endpoint(ws_url: str) -> str:
    """phoenix.js wants the socket path without the transport suffix."""
    return ws_url.removesuffix("/websocket")


def run_client(ws_url: str, token: str, mode: str, user: str, env=None) -> dict:
    if not (HERE / "node_modules" / "phoenix").is_dir():
        pytest.fail("tests/interop/node_modules is missing: run scripts/bootstrap.sh (npm ci)")
    assert NODE is not None
    proc = subprocess.run(
        [NODE, str(SCRIPT), endpoint(ws_url), token, mode, user],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_S,
        env=env,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"node printed nothing (exit {proc.returncode}):\n{proc.stderr}"
    result = json.loads(lines[-1])
    assert proc.returncode == 0, f"{result.get('failure')}\n{result}\n{proc.stderr}"
    return result


@pytest.mark.parametrize("mode", ["params", "authToken"])
def test_phoenix_js_client_full_session(service, mode):
    user = f"js-{mode}"
    result = run_client(service.ws_url, service.token(user), mode, user)

    assert result["opened"] and not result["refused"]
    assert result["joined"]
    assert isinstance(result["join_response"], dict)
    assert user in result["presence_keys"]
    assert result["presence_self_metas"] == 1
    assert result["json_reply"] == {
        "hello": "world",
        "n": 42,
        "nested": {"list": [1, 2.5, None, "x"]},
        "unicode": "ünï",
    }
    assert result["binary_reply_type"] == "ArrayBuffer"
    assert result["binary_reply"] == [0, 1, 2, 127, 128, 250, 255]
    assert result["shout"] == {"from": "phoenix.js"}
    assert result["heartbeat_replies"] >= 2
    assert isinstance(result["ping_rtt_ms"], int) and result["ping_rtt_ms"] >= 0
    assert result["left"]
    assert result["closed_during_session"] is None
    assert result["steps"] == [
        "connect",
        "join",
        "presence",
        "json ping",
        "binary ping",
        "shout",
        "heartbeat",
        "leave",
    ]


@pytest.mark.parametrize("mode", ["params", "authToken"])
def test_phoenix_js_client_with_forged_token_is_refused(service, mode):
    forged = service.token("mallory")[:-4] + "AAAA"
    result = run_client(service.ws_url, forged, mode, "mallory")
    assert result["refused"] and not result["opened"]
    assert "403" in result["error_before_open"]


def test_phoenix_js_client_over_tls(tls_service):
    """wss:// with a development certificate that Node trusts through NODE_EXTRA_CA_CERTS."""
    import os

    svc, cert = tls_service()
    env = dict(os.environ, NODE_EXTRA_CA_CERTS=str(cert))
    result = run_client(svc.ws_url, svc.token("js-tls"), "params", "js-tls", env=env)
    assert result["joined"] and "js-tls" in result["presence_keys"]
    assert result["binary_reply"] == [0, 1, 2, 127, 128, 250, 255]
