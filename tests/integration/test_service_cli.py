"""`veraltheim-service run` and `token issue` end to end: tokens, graceful stop, bad config."""

from __future__ import annotations

import asyncio
import signal
import socket
import stat

import pytest
from veraltheim.service.auth import verify_token
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.phx_frames import WAIT_S, join, open_socket, until
from tests.support.service import TEST_SECRET, service_cli, service_env

cli = service_cli


def env_without_secret() -> dict[str, str]:
    env = service_env()
    del env["VERALTHEIM_SECRET_KEY"]
    return env


async def test_issued_token_is_accepted(service):
    ws = await open_socket(service.ws_url, token=service.token("alice"))
    try:
        reply = await join(ws)
        assert reply["status"] == "ok"
    finally:
        await ws.close()


def test_token_issue_read_only_claim(tmp_path):
    out = cli("token", "issue", "--user", "bob", "--ttl", "60", "--read-only")
    assert out.returncode == 0, out.stderr
    claims = verify_token(TEST_SECRET, out.stdout.strip())
    assert claims["user"] == "bob"
    assert claims["read_only"] is True
    plain = cli("token", "issue", "--user", "bob", "--ttl", "60")
    assert "read_only" not in verify_token(TEST_SECRET, plain.stdout.strip())


def test_token_issue_bad_ttl_is_one_line_error(tmp_path):
    out = cli("token", "issue", "--user", "bob", "--ttl", "-5", "--data-dir", str(tmp_path))
    assert out.returncode != 0
    assert out.stderr.count("\n") == 1 and "ttl" in out.stderr


async def test_generated_secret_is_shared_by_token_issue_and_run(service_factory, tmp_path):
    """No secret configured: token issue makes <data_dir>/secret_key (0600) and run uses it."""
    data = tmp_path / "data"
    out = cli("token", "issue", "--user", "carol", "--ttl", "600", "--data-dir", str(data),
              env=env_without_secret())  # fmt: skip
    assert out.returncode == 0, out.stderr
    secret_file = data / "secret_key"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert verify_token(secret_file.read_text().strip(), out.stdout.strip())["user"] == "carol"

    svc = service_factory(data_dir=data, env={"VERALTHEIM_SECRET_KEY": ""})
    # An empty VERALTHEIM_SECRET_KEY means unset: the service falls back to the file too.
    ws = await open_socket(svc.ws_url, token=out.stdout.strip())
    try:
        assert (await join(ws))["status"] == "ok"
    finally:
        await ws.close()
    with pytest.raises(InvalidStatus):
        await open_socket(svc.ws_url, "carol")  # another secret


async def test_graceful_stop_sends_phx_close_and_1001_then_exits_0(service):
    ws = await open_socket(service.ws_url, token=service.token("alice"))
    assert (await join(ws, "lobby", "7"))["status"] == "ok"
    stopped = asyncio.get_running_loop().run_in_executor(None, service.stop)
    close = await until(ws, "phx_close")
    assert close.join_ref == "7"
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), WAIT_S)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert await stopped == 0
    assert any("stopp" in line for line in service.output)


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ('port = "http"\n', "'port'"),
        ("max_frame_bytes = 1\nprot = 1\n", "unknown setting 'prot'"),
        ("[compute]\nworkers = -1\n", "'compute.workers'"),
        ("port = = 1\n", "not valid TOML"),
    ],
)
def test_bad_config_file_exits_nonzero_with_one_line(tmp_path, toml, needle):
    config = tmp_path / "service.toml"
    config.write_text(toml)
    out = cli("run", "--config", str(config), "--port", "0", "--data-dir", str(tmp_path))
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("veraltheim-service: error: ") and needle in out.stderr


def test_bad_env_value_names_the_variable(tmp_path):
    env = service_env({"VERALTHEIM_IDLE_TIMEOUT_S": "soon"})
    out = cli("run", "--port", "0", "--data-dir", str(tmp_path), env=env)
    assert out.returncode == 2
    assert "VERALTHEIM_IDLE_TIMEOUT_S" in out.stderr and out.stderr.count("\n") == 1


def test_port_in_use_is_one_line_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = cli("run", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(tmp_path))
    assert out.returncode == 1
    assert out.stdout == ""
    last = out.stderr.strip().splitlines()[-1]
    assert (
        last
        == f"veraltheim-service: error: cannot listen on 127.0.0.1:{port}: address already in use"
    )


def test_config_file_values_reach_the_service(service_factory, tmp_path):
    """A TOML file sets the host; the flag --port 0 (from the harness) beats the file's port."""
    config = tmp_path / "service.toml"
    config.write_text('host = "127.0.0.1"\nport = 1\nlog_level = "debug"\n')
    svc = service_factory("--config", str(config))
    assert svc.port not in (0, 1)
    assert any(" DEBUG " in line for line in svc.output)


def test_status_of_a_service_never_started(tmp_path):
    out = cli("status", "--data-dir", str(tmp_path))
    assert out.returncode == 3
    assert out.stdout.strip() == "stopped"


def test_config_file_from_environment_variable(tmp_path):
    config = tmp_path / "from-env.toml"
    config.write_text("[docs]\ncompact_every = 0\n")
    out = cli(
        "config", "--data-dir", str(tmp_path), env=service_env({"VERALTHEIM_CONFIG": str(config)})
    )
    assert out.returncode == 2
    assert "'docs.compact_every'" in out.stderr and str(config) in out.stderr
    config.write_text("[docs]\ncompact_every = 5\n")
    env = service_env({"VERALTHEIM_CONFIG": str(config), "VERALTHEIM_DOCS_COMPACT_EVERY": "6"})
    out = cli("config", "--data-dir", str(tmp_path), env=env)
    assert out.returncode == 0, out.stderr
    assert "compact_every = 6" in out.stdout.splitlines()
    assert "# secret_key = <set>" in out.stdout and "test-secret" not in out.stdout


def test_ctrl_c_stops_gracefully_with_exit_0(service):
    assert service.proc is not None
    service.proc.send_signal(signal.SIGINT)
    assert service.proc.wait(30) == 0
    assert any("stopping" in line for line in service.output)


async def test_env_beats_file_in_the_running_service(service_factory, tmp_path):
    """allowed_origins from the file is overridden by VERALTHEIM_ALLOWED_ORIGINS."""
    config = tmp_path / "service.toml"
    config.write_text('allowed_origins = ["https://file.example"]\n')
    env = {"VERALTHEIM_ALLOWED_ORIGINS": "https://env.example"}
    svc = service_factory("--config", str(config), env=env)
    token = svc.token("olive")
    ws = await open_socket(svc.ws_url, token=token, origin="https://env.example")
    await ws.close()
    for origin in ("https://file.example", "https://evil.example"):
        with pytest.raises(InvalidStatus) as err:
            await open_socket(svc.ws_url, token=token, origin=origin)
        assert err.value.response.status_code == 403


def test_log_file_flag_sends_the_log_there(service_factory, tmp_path):
    log = tmp_path / "logs" / "service.log"
    svc = service_factory("--log-file", str(log))
    text = log.read_text()
    assert f"listening on {svc.ws_url}" in text
    assert [line for line in svc.output if line.strip()] == [f"listening {svc.ws_url}\n"]
