"""What the compute tests share."""

import asyncio
import contextlib

import numpy as np
from veraltheim.protocol.envelope import pack_envelope

# Deep inside the Mandelbrot set every pixel runs max_iter iterations: seconds of wasm work with
# progress every few rows, and under the pixel count the service splits into tiles.
LONG_MANDELBROT = {
    "width": 200,
    "height": 300,
    "center_x": 0.0,
    "center_y": 0.0,
    "scale": 0.01,
    "max_iter": 100_000,
}


def request(ch, kernel: str, params: dict, data: bytes = b"", job_id: str = "1", **header):
    header = {"kernel": kernel, "params": params, "id": job_id, **header}
    return ch.push("compute_request", pack_envelope(header, data), timeout=60)


def image(w: int, h: int, seed: int = 7) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 4), np.uint8).tobytes()


def jobs(runtime):
    """One small job per kernel in the manifest (tileable ones big enough to be split)."""
    f64 = np.random.default_rng(3).standard_normal(5000).astype("<f8").tobytes()
    img = image(320, 240)
    wh = {"width": 320, "height": 240}
    cases = {
        "image.grayscale": (img, wh),
        "image.blur": (img, {**wh, "radius": 4}),
        "image.edges": (img, wh),
        "image.resize": (img, {**wh, "out_width": 101, "out_height": 77}),
        "fractal.mandelbrot": (b"", {"width": 320, "height": 240, "max_iter": 300}),
        "data.stats": (f64, {"bins": 16}),
        "data.sort": (f64, {"dtype": "f64"}),
        "hash.sha256": (bytes(range(256)) * 300, {}),
    }
    assert set(cases) == {s.name for s in runtime.catalogue()}, "a kernel has no case here"
    return cases


async def wait_for_progress(channel, job_id: str) -> list[dict]:
    seen: list[dict] = []
    got = asyncio.Event()

    def on_progress(payload):
        if payload["id"] == job_id:
            seen.append(payload)
            got.set()

    channel.on("progress", on_progress)
    await asyncio.wait_for(got.wait(), 30)
    return seen


@contextlib.asynccontextmanager
async def compute_channel(svc):
    """A client.net channel joined to compute:default on `svc` (as `ch.svc`)."""
    from veraltheim.client.net.socket import Socket

    sock = Socket(svc.ws_url)
    await sock.connect()
    try:
        ch = sock.channel("compute:default")
        await ch.join()
        ch.svc = svc
        yield ch
    finally:
        await sock.disconnect()
