"""The `compute:default` channel of a real service (subprocess, loopback), driven over real
WebSocket frames by client.net: results, errors, backpressure, cancel, progress, crashes."""

from __future__ import annotations

import asyncio
import os
import signal

import numpy as np
import pytest
from veraltheim.client.net.socket import Socket
from veraltheim.protocol.envelope import pack_envelope, unpack_envelope

from tests.support.compute import LONG_MANDELBROT, compute_channel, jobs, request, wait_for_progress

COMPUTE_ENV = {
    "VERALTHEIM_COMPUTE_WORKERS": "2",
    "VERALTHEIM_COMPUTE_QUEUE_LIMIT": "1",
    "VERALTHEIM_COMPUTE_JOB_DEADLINE_S": "60",
}
LONG = LONG_MANDELBROT


@pytest.fixture
async def channel(service_factory):
    async with compute_channel(service_factory("--no-auth", env=COMPUTE_ENV)) as ch:
        yield ch


async def test_every_kernel_remote_is_byte_identical_to_local(channel, runtime):
    tiled = set()
    for n, (kernel, (data, params)) in enumerate(jobs(runtime).items()):
        reply = await request(channel, kernel, params, data, job_id=str(n))
        assert reply.status == "ok", (kernel, reply.response)
        header, output = unpack_envelope(reply.response)
        assert output == runtime.run(kernel, data, params).output, kernel
        assert header["where"] == "remote" and header["id"] == str(n)
        assert set(header["timings"]) == {"queue_ms", "run_ms", "total_ms"}
        if header["tiles"] > 1:
            tiled.add(kernel)
            assert len(set(header["workers"])) == header["tiles"]
    assert {"fractal.mandelbrot", "image.blur", "image.edges"} <= tiled


async def test_kernels_lists_catalogue_remote_only_and_load(channel, runtime):
    reply = await channel.push("kernels", {})
    assert reply.ok
    kernels, load = reply.response["kernels"], reply.response["load"]
    assert {s.name for s in runtime.catalogue()} < set(kernels)
    assert kernels["data.percentiles"]["remote_only"] is True
    assert kernels["image.blur"]["remote_only"] is False
    assert load["workers"] == 2 and load["busy"] == 0 and load["queue_depth"] == 0
    assert 0 < load["max_input_bytes"] < 16 * 1024 * 1024  # the default frame limit, less room
    await request(channel, "hash.sha256", {}, b"abc")
    load = (await channel.push("kernels", {})).response["load"]
    assert load["throughput"]["hash.sha256"]["jobs"] == 1


async def test_remote_only_native_kernel(channel):
    data = np.arange(1, 102, dtype="<f8")
    reply = await request(channel, "data.percentiles", {"steps": 4}, data.tobytes())
    _, output = unpack_envelope(reply.response)
    assert np.frombuffer(output).tolist() == [1.0, 26.0, 51.0, 76.0, 101.0]


async def test_json_request_with_stats_output_gets_json(channel):
    reply = await channel.push(
        "compute_request",
        {
            "kernel": "data.stats",
            "id": "j",
            "params": {"bins": 2},
            "input": [1, 2, 3, 4],
        },
    )
    assert reply.ok
    assert reply.response["result"]["count"] == 4 and reply.response["result"]["mean"] == 2.5


async def test_json_input_numbers_take_the_dtype_the_params_name(channel):
    for dtype, numpy_type in (("i32", "<i4"), ("f64", "<f8")):
        job = {"kernel": "data.sort", "id": dtype, "params": {"dtype": dtype}, "input": [3, 1, 2]}
        reply = await channel.push("compute_request", job)
        assert reply.ok, reply.response
        _, output = unpack_envelope(reply.response)
        assert np.frombuffer(output, numpy_type).tolist() == [1, 2, 3]


BAD_REQUESTS = [
    (pack_envelope({"kernel": "no.such", "id": "x"}), "unknown_kernel"),
    (
        pack_envelope(
            {"kernel": "image.blur", "id": "x", "params": {"width": 2, "height": 2}}, b"123"
        ),
        "bad_input",
    ),
    (
        pack_envelope({"kernel": "image.blur", "id": "x", "params": {"width": 0, "height": 2}}),
        "bad_input",
    ),
    (pack_envelope({"kernel": "hash.sha256"}), "bad_request"),  # no id
    (b"\x00\x00\x00\xff{", "bad_request"),  # header length past the end
    ({"kernel": "data.stats", "id": "x", "input": "not base64!"}, "bad_request"),
    ({"kernel": "data.stats", "id": "x", "input": [1e308, 10**400]}, "bad_request"),
    (
        {"kernel": "data.sort", "id": "x", "params": {"dtype": "i32"}, "input": [0.5, 2**40]},
        "bad_request",
    ),
    (
        pack_envelope({"kernel": "data.percentiles", "id": "x"}, np.full(3, np.nan).tobytes()),
        "bad_input",
    ),  # native kernel: only NaN values
]


async def test_bad_requests_get_clear_errors_and_change_nothing(channel):
    for payload, reason in BAD_REQUESTS:
        reply = await channel.push("compute_request", payload)
        assert reply.status == "error", payload
        assert reply.response["reason"] == reason and reply.response["message"], payload
    ok = await request(channel, "hash.sha256", {}, b"still fine", job_id="after")
    assert ok.ok
    load = (await channel.push("kernels", {})).response["load"]
    assert load["crashes"] == 0 and load["workers"] == 2


async def test_busy_cancel_queued_and_running_with_progress(channel):
    running = [request(channel, "fractal.mandelbrot", LONG, job_id=f"r{i}") for i in range(2)]
    await wait_for_progress(channel, "r1")
    queued = request(channel, "fractal.mandelbrot", LONG, job_id="q")
    busy = await request(channel, "fractal.mandelbrot", LONG, job_id="b")
    assert busy.status == "error" and busy.response["reason"] == "busy"
    assert busy.response["queue_depth"] == 1

    progress = await wait_for_progress(channel, "r0")
    assert progress[-1]["total"] > 0 and 0 <= progress[-1]["done"] <= progress[-1]["total"]
    for job_id in ("q", "r0"):
        ack = await channel.push("cancel", {"id": job_id})
        assert ack.ok, ack.response
    for push in (queued, running[0]):
        reply = await push
        assert reply.status == "error" and reply.response["reason"] == "cancelled"
    unknown = await channel.push("cancel", {"id": "never"})
    assert unknown.status == "error" and unknown.response["reason"] == "unknown_job"
    await channel.push("cancel", {"id": "r1"})
    assert (await running[1]).response["reason"] == "cancelled"
    # The workers stopped through the Runtime's CancelToken: same processes, free again.
    load = (await channel.push("kernels", {})).response["load"]
    for _ in range(100):
        if load["busy"] == 0:
            break
        await asyncio.sleep(0.05)
        load = (await channel.push("kernels", {})).response["load"]
    assert load["busy"] == 0 and load["crashes"] == 0


async def test_killed_worker_fails_its_job_and_is_replaced(channel):
    doomed = request(channel, "fractal.mandelbrot", LONG, job_id="doomed")
    await wait_for_progress(channel, "doomed")
    load = (await channel.push("kernels", {})).response["load"]
    (victim,) = load["busy_pids"]
    os.kill(victim, signal.SIGKILL)
    reply = await doomed
    assert reply.status == "error" and reply.response["reason"] == "worker_crashed"
    assert str(victim) in reply.response["message"]
    ok = await request(channel, "hash.sha256", {}, b"next", job_id="next")
    assert ok.ok
    load = (await channel.push("kernels", {})).response["load"]
    assert load["workers"] == 2 and victim not in load["worker_pids"] and load["crashes"] == 1


async def test_deadline(channel):
    reply = await request(channel, "fractal.mandelbrot", LONG, job_id="slow", deadline_s=0.3)
    assert reply.status == "error" and reply.response["reason"] == "deadline"
    assert (await request(channel, "hash.sha256", {}, b"x", job_id="fine")).ok


async def test_leaving_the_topic_cancels_its_jobs(channel):
    other = Socket(channel.svc.ws_url)
    await other.connect()
    watcher = other.channel("compute:default")
    await watcher.join()
    request(channel, "fractal.mandelbrot", LONG, job_id="orphan")
    await wait_for_progress(channel, "orphan")
    assert (await watcher.push("kernels", {})).response["load"]["busy"] == 1
    await channel.leave()
    for _ in range(200):
        load = (await watcher.push("kernels", {"catalogue": False})).response["load"]
        if load["busy"] == 0:
            break
        await asyncio.sleep(0.02)
    assert load["busy"] == 0 and load["crashes"] == 0  # stopped by cancel, not killed
    await other.disconnect()


async def test_progress_of_a_tiled_job_counts_up_to_a_fixed_total(channel):
    events: list[dict] = []
    channel.on("progress", lambda p: p["id"] == "tiled" and events.append(p))
    params = {**LONG, "width": 320, "height": 240, "max_iter": 3000}
    reply = await request(channel, "fractal.mandelbrot", params, job_id="tiled")
    header, _ = unpack_envelope(reply.response)
    assert header["tiles"] == 2
    assert events and {e["total"] for e in events} == {240}
    assert [e["done"] for e in events] == sorted(e["done"] for e in events)
    assert events[-1]["done"] == 240


async def test_max_tiles_setting_keeps_jobs_whole(service_factory):
    svc = service_factory("--no-auth", env={**COMPUTE_ENV, "VERALTHEIM_COMPUTE_MAX_TILES": "1"})
    sock = Socket(svc.ws_url)
    await sock.connect()
    ch = sock.channel("compute:default")
    await ch.join()
    params = {"width": 320, "height": 240, "max_iter": 300}
    header, _ = unpack_envelope((await request(ch, "fractal.mandelbrot", params)).response)
    assert header["tiles"] == 1 and header["load"]["max_tiles"] == 1
    await sock.disconnect()
