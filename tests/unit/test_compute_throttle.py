"""The throttling proxy adds the latency and caps the bandwidth it is set to, changeable live."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from tests.support.throttle import ProxyProcess, ThrottleProxy


@pytest.fixture
def echo_port():
    srv = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            with conn:
                while chunk := conn.recv(65536):
                    conn.sendall(chunk)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(5)
    srv.close()


def round_trip(port: int, payload: bytes) -> tuple[bytes, float]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        start = time.perf_counter()
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            got += s.recv(65536)
        return got, time.perf_counter() - start


def test_latency_and_bandwidth_are_applied_and_changeable(echo_port):
    with ThrottleProxy(echo_port, rtt_ms=40) as proxy:
        data, elapsed = round_trip(proxy.port, b"ping")
        assert data == b"ping"
        assert elapsed >= 0.040  # one round trip: rtt/2 each way
        proxy.set_link(rtt_ms=0, bandwidth_bps=8_000_000)  # 1 MB/s each way
        blob = bytes(range(256)) * 1024  # 256 KiB: at least 0.25 s up, overlapping down
        data, elapsed = round_trip(proxy.port, blob)
        assert data == blob
        assert elapsed >= 0.25
        proxy.set_link(rtt_ms=0, bandwidth_bps=0)
        data, elapsed = round_trip(proxy.port, b"fast")
        assert data == b"fast"


def test_drop_connections_cuts_open_links(echo_port):
    with ThrottleProxy(echo_port) as proxy:
        s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        s.sendall(b"x")
        assert s.recv(1) == b"x"
        proxy.drop_connections()
        s.settimeout(10)
        with contextlib.suppress(ConnectionResetError):  # closed or reset: either is cut
            assert s.recv(1) == b""
        s.close()


def test_rewrite_url_points_at_the_proxy(echo_port):
    with ThrottleProxy(echo_port) as proxy:
        url = f"ws://127.0.0.1:{echo_port}/socket/websocket"
        assert proxy.rewrite_url(url) == f"ws://127.0.0.1:{proxy.port}/socket/websocket"


def test_the_proxy_in_a_process_of_its_own_takes_links_and_ends_with_its_owner(echo_port):
    with ProxyProcess(echo_port) as proxy:
        assert proxy.rewrite_url(f"ws://127.0.0.1:{echo_port}/socket") == (
            f"ws://127.0.0.1:{proxy.port}/socket"
        )
        proxy.set_link(rtt_ms=40, bandwidth_bps=0)
        data, elapsed = round_trip(proxy.port, b"ping")
        assert data == b"ping" and elapsed >= 0.040
        proxy.set_link(rtt_ms=0, bandwidth_bps=0)
        assert round_trip(proxy.port, b"fast")[0] == b"fast"
    assert proxy.proc.returncode == 0  # closing its stdin ended it
