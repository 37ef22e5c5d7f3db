import os
from pathlib import Path

# Every test runs without a screen; set before anything imports Qt.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest

from tests.support.service import ServiceProcess, running_service, service_cli


@pytest.fixture(autouse=True)
def user_kernels_dir(tmp_path, monkeypatch) -> Path:
    """Installed user kernels go to (and are read from) a temporary dir, never the user's own."""
    path = tmp_path / "user-kernels"
    monkeypatch.setenv("VERALTHEIM_USER_KERNELS_DIR", str(path))
    return path


@pytest.fixture
def service_factory(tmp_path_factory):
    """Start services: `service_factory("--no-auth")`; each is stopped at the end of the test."""
    stack = []

    def start(*args: str, env: dict[str, str] | None = None, data_dir=None) -> ServiceProcess:
        cm = running_service(data_dir or tmp_path_factory.mktemp("service"), *args, env=env)
        stack.append(cm)
        return cm.__enter__()

    yield start
    while stack:
        stack.pop().__exit__(None, None, None)


@pytest.fixture
def service(service_factory) -> ServiceProcess:
    """A running service with auth on (tests sign tokens with `service.token(user)`)."""
    return service_factory()


@pytest.fixture(scope="session")
def runtime():
    """One wasm Runtime for the tests that only run kernels (it is thread-safe)."""
    from veraltheim.wasm import Runtime

    return Runtime()


@pytest.fixture
async def sockets(request):
    """Make client sockets (`sockets(url, **kwargs)`), disconnected at the end of the test. They
    retry on the test module's `FAST` backoff, so reconnect tests do not wait seconds."""
    from veraltheim.client.net.socket import Socket

    fast = request.module.FAST
    made: list[Socket] = []

    def make(url: str, **kwargs) -> Socket:
        kwargs.setdefault("reconnect_backoff", fast)
        kwargs.setdefault("rejoin_backoff", fast)
        sock = Socket(url, **kwargs)
        made.append(sock)
        return sock

    yield make
    for sock in made:
        await sock.disconnect()


@pytest.fixture
def tls_service(service_factory, tmp_path):
    """`tls_service(*args)`: a wss:// service with a fresh development certificate, made the
    way a user makes one (`veraltheim-service cert`); returns (service, cert.pem path)."""

    def start(*args: str) -> tuple[ServiceProcess, Path]:
        certs = tmp_path / "certs"
        made = service_cli("cert", "--out", str(certs), "--host", "127.0.0.1")
        assert made.returncode == 0, made.stderr
        cert = certs / "cert.pem"
        svc = service_factory(*args, "--certfile", str(cert), "--keyfile", str(certs / "key.pem"))
        assert svc.ws_url.startswith("wss://127.0.0.1:")
        return svc, cert

    return start


@pytest.fixture
def redis(tmp_path):
    """A real redis-server (Debian's) on a free port, killed at the end of the test."""
    from tests.support.cluster import RedisServer

    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.kill()
