"""`--compute dask://...`: a real service sends its compute jobs to a real Dask scheduler with two
workers (subprocesses): the same bytes, replies, progress, cancel, deadline and errors as the
local pool; tiles spread over the workers; a worker with another manifest is refused."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest
from veraltheim.client.net.socket import Socket
from veraltheim.protocol.envelope import unpack_envelope
from veraltheim.wasm import DEFAULT_MANIFEST_PATH

from tests.support.cluster import DaskCluster
from tests.support.compute import LONG_MANDELBROT, compute_channel, jobs, request, wait_for_progress
from tests.support.phx_frames import http_get

pytestmark = pytest.mark.slow

ENV = {"VERALTHEIM_COMPUTE_QUEUE_LIMIT": "1", "VERALTHEIM_COMPUTE_JOB_DEADLINE_S": "60"}


@pytest.fixture(scope="module")
def dask(tmp_path_factory):
    cluster = DaskCluster(tmp_path_factory.mktemp("dask"), workers=2).start()
    yield cluster
    cluster.stop()


@pytest.fixture
async def channel(service_factory, dask):
    async with compute_channel(service_factory("--no-auth", "--compute", dask.url, env=ENV)) as ch:
        yield ch


async def test_every_kernel_on_dask_is_byte_identical_to_local(channel, runtime):
    for kernel, (data, params) in jobs(runtime).items():
        reply = await request(channel, kernel, params, data, job_id=kernel)
        assert reply.ok, reply.response
        header, output = unpack_envelope(reply.response)
        assert output == bytes(runtime.run(kernel, data, params).output), kernel
        if kernel == "fractal.mandelbrot":  # 320x240 is two tiles' worth: one per worker
            assert header["tiles"] == 2 and len(set(header["workers"])) == 2
            assert header["load"]["workers"] == 2
    health = json.loads(http_get(channel.svc.http_url + "/healthz")[2])
    assert health["status"] == "ok" and health["cluster"]["compute"]["dask"] == "up"


async def test_progress_cancel_deadline_and_errors_as_with_the_local_pool(channel):
    events: list[dict] = []
    channel.on("progress", lambda p: p["id"] == "tiled" and events.append(p))
    params = {**LONG_MANDELBROT, "width": 320, "height": 240, "max_iter": 3000}
    header, _ = unpack_envelope(
        (await request(channel, "fractal.mandelbrot", params, job_id="tiled")).response
    )
    assert header["tiles"] == 2
    assert events and {e["total"] for e in events} == {240} and events[-1]["done"] == 240

    long = request(channel, "fractal.mandelbrot", LONG_MANDELBROT, job_id="long")
    await wait_for_progress(channel, "long")
    assert (await channel.push("cancel", {"id": "long"})).ok
    reply = await long
    assert reply.status == "error" and reply.response["reason"] == "cancelled"

    reply = await request(
        channel, "fractal.mandelbrot", LONG_MANDELBROT, job_id="slow", deadline_s=0.5
    )
    assert reply.status == "error" and reply.response["reason"] == "deadline"

    bad = await request(channel, "image.blur", {"width": 10, "height": 10}, b"short", job_id="bad")
    assert bad.status == "error" and bad.response["reason"] == "bad_input"
    # the cancelled and timed-out pieces stopped on the workers (their CancelToken), so a new
    # job gets both workers at once
    start = asyncio.get_running_loop().time()
    ok = await request(channel, "fractal.mandelbrot", {"width": 320, "height": 240}, job_id="after")
    assert ok.ok and unpack_envelope(ok.response)[0]["tiles"] == 2
    assert asyncio.get_running_loop().time() - start < 20


async def test_a_worker_with_another_manifest_is_refused(service_factory, tmp_path):
    tampered = tmp_path / "manifest.json"
    shutil.copy(DEFAULT_MANIFEST_PATH, tampered)
    tampered.write_text(tampered.read_text() + "\n")  # same kernels, other bytes: other hash
    other = DaskCluster(tmp_path / "dask", workers=1, env={"VERALTHEIM_MANIFEST": str(tampered)})
    other.start()
    try:
        svc = service_factory("--no-auth", "--compute", other.url, env=ENV)
        sock = Socket(svc.ws_url)
        await sock.connect()
        ch = sock.channel("compute:default")
        await ch.join()
        reply = await request(ch, "hash.sha256", {}, b"x")
        assert reply.status == "error" and reply.response["reason"] == "integrity"
        assert "manifest" in reply.response["message"]
        await sock.disconnect()
    finally:
        other.stop()
