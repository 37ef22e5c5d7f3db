"""The Dispatcher against a real service behind the throttling proxy: its choices follow the
link set on the proxy (the model is never faked), failures fall back, cancel and progress work
in both places."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from veraltheim.client.compute.dispatcher import Dispatcher
from veraltheim.client.compute.errors import RemoteUnavailable
from veraltheim.client.net.socket import Socket
from veraltheim.client.net.state import ConnectionState
from veraltheim.protocol.envelope import pack_envelope
from veraltheim.wasm import Cancelled, CancelToken, MemoryLimitExceeded, Runtime, UnknownKernel

from tests.support.compute import LONG_MANDELBROT
from tests.support.throttle import ThrottleProxy

COMPUTE_ENV = {"VERALTHEIM_COMPUTE_WORKERS": "2", "VERALTHEIM_COMPUTE_QUEUE_LIMIT": "4"}
LONG = LONG_MANDELBROT
# A tileable render (every pixel inside the set: the work is px x max_iter, ~0.1 s on one idle
# core, more on a busy one): on a fast link two service workers beat one thread; its 1.2 MB
# output over a 10 Mbit/s link costs far more than that.
RENDER = {
    "width": 640,
    "height": 480,
    "center_x": 0.0,
    "center_y": 0.0,
    "scale": 0.01,
    "max_iter": 1500,
}
FAST = (1.0, 1e9)
SLOW = (80.0, 10e6)


@pytest.fixture
def svc(service_factory):
    return service_factory("--no-auth", env=COMPUTE_ENV)


@pytest.fixture
def proxy(svc):
    with ThrottleProxy(svc.port) as p:
        yield p


@pytest.fixture
async def connect(proxy, svc, runtime):
    """connect(link) -> a Dispatcher on its own socket through the proxy set to `link`."""
    sockets = []

    async def make(link=FAST, rt=runtime):
        proxy.set_link(*link)
        sock = Socket(proxy.rewrite_url(svc.ws_url))
        sockets.append(sock)
        await sock.connect()
        dispatcher = Dispatcher(rt, sock)
        assert await dispatcher.connect()
        return dispatcher

    yield make
    for sock in sockets:
        await sock.disconnect()


async def until_load(d: Dispatcher, predicate, timeout: float = 10.0) -> None:
    """Ask the service for its load until `predicate(load)` holds (TimeoutError if it never)."""
    async with asyncio.timeout(timeout):
        while True:
            await d.refresh()
            if predicate(d.model.load):
                return
            await asyncio.sleep(0.02)


async def test_tiny_job_runs_local_on_a_slow_link(connect):
    d = await connect(SLOW)
    assert d.model.rtt_ms >= SLOW[0]
    assert d.model.bandwidth_bps < 2 * SLOW[1]  # learned from the probe, not the prior
    out, decision = await d.run("hash.sha256", b"tiny")
    assert decision.where == "local" and decision.reason == "local estimated faster"
    assert decision.remote_estimate_ms >= SLOW[0] > decision.local_estimate_ms
    assert len(out) == 32


async def test_same_render_goes_remote_on_a_fast_link_and_local_on_a_slow_one(connect, runtime):
    expected = runtime.run("fractal.mandelbrot", b"", RENDER).output
    fast = await connect(FAST)
    # One measured local run first, so the choice rests on this machine's speed, not the hint.
    await fast.run("fractal.mandelbrot", b"", RENDER, where="local")
    out, decision = await fast.run("fractal.mandelbrot", b"", RENDER)
    assert decision.where == "remote", decision.summary()
    assert decision.remote["tiles"] == 2 and out == expected
    slow = await connect(SLOW)
    await slow.run("fractal.mandelbrot", b"", RENDER, where="local")
    out, decision = await slow.run("fractal.mandelbrot", b"", RENDER)
    assert decision.where == "local", decision.summary()  # 1.2 MB back over 10 Mbit/s
    assert out == expected


async def test_busy_service_sends_work_local(connect, svc):
    d = await connect(FAST)
    sock = Socket(svc.ws_url)
    await sock.connect()
    ch = sock.channel("compute:default")
    await ch.join()
    hogs = [
        ch.push(
            "compute_request",
            pack_envelope({"kernel": "fractal.mandelbrot", "params": LONG, "id": f"hog{i}"}),
            timeout=60,
        )
        for i in range(3)
    ]
    await until_load(d, lambda load: load.busy == 2 and load.queue_depth == 1)
    _, decision = await d.run("fractal.mandelbrot", b"", RENDER)
    assert decision.where == "local", decision.summary()
    for i in range(3):
        await ch.push("cancel", {"id": f"hog{i}"})
    await asyncio.gather(*hogs)
    await sock.disconnect()


async def test_forced_places_and_one_sided_kernels(connect, runtime):
    d = await connect(FAST)
    data = np.arange(1.0, 102.0).tobytes()
    out, decision = await d.run("data.percentiles", data, {"steps": 2})
    assert decision.where == "remote" and decision.reason == "remote-only kernel"
    assert np.frombuffer(out).tolist() == [1.0, 51.0, 101.0]
    with pytest.raises(UnknownKernel, match="service only"):
        await d.run("data.percentiles", data, where="local")
    out, decision = await d.run("hash.sha256", b"abc", where="remote")
    assert decision.where == "remote" and decision.reason == "forced remote"
    assert out == runtime.run("hash.sha256", b"abc", {}).output
    _, decision = await d.run("hash.sha256", b"abc" * 100_000, where="local")
    assert decision.where == "local" and decision.reason == "forced local"
    assert decision.decision_us < 1000  # sanity only; the 50 us goal is measured in bench/


async def test_remote_only_kernel_while_offline_is_a_clear_error(connect, svc, runtime):
    d = await connect(FAST)
    svc.kill()
    await wait_state(d.remote.socket, lambda s: s != ConnectionState.CONNECTED)
    # Reconnecting: auto goes local and says why; a remote-only job waits, at most its deadline.
    _, decision = await d.run("hash.sha256", b"abc")
    assert decision.where == "local" and decision.reason == "service reconnecting"
    with pytest.raises(RemoteUnavailable, match=r"runs on the service only.*reconnect within"):
        await d.run("data.percentiles", np.arange(3.0).tobytes(), deadline_s=0.2)
    with pytest.raises(UnknownKernel, match="on the service only"):  # at once, no waiting
        await asyncio.wait_for(d.run("data.percentiles", b"", where="local"), 5)
    # OFFLINE (the socket gave up): a clear error at once, and local for auto.
    await d.remote.socket.disconnect()
    with pytest.raises(RemoteUnavailable, match=r"runs on the service only.*offline"):
        await d.run("data.percentiles", np.arange(3.0).tobytes())
    _, decision = await d.run("hash.sha256", b"abc")
    assert decision.where == "local" and decision.reason == "offline"
    with pytest.raises(UnknownKernel, match=r"data\.percentiles"):
        await Dispatcher(runtime, None).run("data.percentiles", b"")


async def test_remote_runs_right_after_a_reconnect_wait_for_the_rejoin(connect, proxy, runtime):
    d = await connect(FAST)
    sock = d.remote.socket
    for where, kernel, data, params in [
        ("remote", "hash.sha256", b"abc", {}),
        ("auto", "data.percentiles", np.arange(1.0, 6.0).tobytes(), {"steps": 1}),
    ]:
        proxy.drop_connections()
        await wait_state(sock, lambda s: s != ConnectionState.CONNECTED)
        _, decision = await d.run("hash.sha256", b"abc")  # auto meanwhile: local, and why
        assert decision.where == "local", decision.summary()
        assert decision.reason in ("service reconnecting", "compute channel rejoining")
        out, decision = await d.run(kernel, data, params, where=where, deadline_s=30)
        assert decision.where == "remote", decision.summary()
        if kernel == "hash.sha256":
            assert out == runtime.run(kernel, data, params).output
        else:
            assert np.frombuffer(out).tolist() == [1.0, 5.0]


async def wait_state(sock: Socket, predicate, timeout: float = 10.0) -> None:
    changed = asyncio.Event()
    ref = sock.on_state(lambda state: predicate(state) and changed.set())
    try:
        if not predicate(sock.state):
            await asyncio.wait_for(changed.wait(), timeout)
    finally:
        sock.off(ref)


async def test_service_gone_mid_job_falls_back_to_local(connect, svc, runtime):
    d = await connect(FAST)
    started = asyncio.Event()
    params = {**RENDER, "width": 320, "height": 240, "max_iter": 6000}  # tiles: auto picks remote
    job = asyncio.create_task(
        d.run("fractal.mandelbrot", b"", params, progress=lambda *_: started.set())
    )
    await asyncio.wait_for(started.wait(), 30)
    svc.kill()
    out, decision = await asyncio.wait_for(job, 120)
    assert decision.where == "local" and decision.fallback, decision.summary()
    assert out == runtime.run("fractal.mandelbrot", b"", params).output


@pytest.mark.parametrize("where", ["local", "remote"])
async def test_cancel_and_progress_in_both_places(connect, svc, where):
    d = await connect(FAST)
    token = CancelToken()
    seen: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))
        token.cancel()

    with pytest.raises(Cancelled):
        await asyncio.wait_for(
            d.run("fractal.mandelbrot", b"", LONG, where=where, progress=progress, cancel=token),
            60,
        )
    assert seen and 0 < seen[0][0] <= seen[0][1]
    if where == "remote":  # the service stopped the job too: its workers are free again
        await until_load(d, lambda load: load.busy == 0)


async def test_local_limit_failure_is_an_error_not_a_retry(connect):
    small = Runtime(memory_limit_bytes=2 * 1024 * 1024)
    d = await connect(FAST, rt=small)
    params = {"width": 16, "height": 16, "out_width": 2000, "out_height": 2000}
    with pytest.raises(MemoryLimitExceeded):  # 16 MB of output does not fit in 2 MiB
        await d.run("image.resize", bytes(16 * 16 * 4), params, where="local")
    with pytest.raises(MemoryLimitExceeded):
        await Dispatcher(small, None).run("image.resize", bytes(16 * 16 * 4), params)


async def test_remote_timeout_falls_back_and_cancels_on_the_service(proxy, svc, runtime):
    proxy.set_link(*FAST)
    sock = Socket(proxy.rewrite_url(svc.ws_url))
    await sock.connect()
    d = Dispatcher(runtime, sock, max_remote_timeout_s=0.1)
    assert await d.connect()
    params = {**RENDER, "width": 320, "height": 240, "max_iter": 30_000}  # tiles: remote
    out, decision = await d.run("fractal.mandelbrot", b"", params)
    assert decision.where == "local" and "reply" in decision.fallback, decision.summary()
    assert out == runtime.run("fractal.mandelbrot", b"", params).output
    await until_load(d, lambda load: load.busy == 0)  # it dropped the job we gave up on
    assert "fractal.mandelbrot" not in d.remote.load["throughput"]  # cancelled, never finished
    await sock.disconnect()


async def test_refused_topic_means_local_without_asking_again_each_run(svc, runtime):
    sock = Socket(svc.ws_url)
    await sock.connect()
    joins: list[str] = []
    sock.on_frame(lambda direction, msg: msg.event == "phx_join" and joins.append(msg.topic))
    d = Dispatcher(runtime, sock, topic="compute:nope")
    for _ in range(3):
        _, decision = await d.run("hash.sha256", b"abc")
        assert decision.where == "local" and decision.reason == "offline"
    assert joins == ["compute:nope"]  # refused once (unknown_pool); not retried on every run
    await sock.disconnect()


async def test_a_remote_run_whose_task_is_cancelled_stops_on_the_service(connect):
    d = await connect(FAST)
    started = asyncio.Event()
    run = asyncio.create_task(
        d.run("fractal.mandelbrot", b"", LONG, where="remote", progress=lambda *_: started.set())
    )
    await asyncio.wait_for(started.wait(), 30)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await until_load(d, lambda load: load.busy == 0)  # the service was told: worker free again
