"""Every kernel through wasm.Runtime against an independent reference (numpy, hashlib, plain
Python) that implements the semantics written in kernels.toml, byte for byte."""

from __future__ import annotations

import ctypes
import hashlib
import math
import struct

import numpy as np
import pytest
import wasmtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from veraltheim.wasm import MemoryLimitExceeded, Runtime
from veraltheim.wasm.manifest import load_manifest

RNG_SEED = 20261127
IMAGE_SIZES = [(1, 1), (1, 7), (7, 1), (3, 5), (17, 33), (31, 64), (64, 100)]


@pytest.fixture(scope="module")
def rt(tmp_path_factory) -> Runtime:
    return Runtime(cache_dir=tmp_path_factory.mktemp("kernel-cache"))


def rgba(h: int, w: int, seed: int = RNG_SEED) -> np.ndarray:
    return np.random.default_rng(seed + 31 * h + w).integers(0, 256, (h, w, 4), dtype=np.uint8)


def run(rt: Runtime, kernel: str, data: bytes, **params) -> bytes:
    return rt.run(kernel, data, params).output


# ---- references -------------------------------------------------------------------------------


def luma(img: np.ndarray) -> np.ndarray:
    a = img.astype(np.int64)
    return (77 * a[..., 0] + 150 * a[..., 1] + 29 * a[..., 2] + 128) >> 8


def ref_grayscale(img: np.ndarray) -> np.ndarray:
    out = np.repeat(luma(img)[..., None], 4, axis=2).astype(np.uint8)
    out[..., 3] = img[..., 3]
    return out


def blur_weights(radius: int) -> list[int]:
    sigma = radius / 2
    g = [math.exp(-(k * k) / (2 * sigma * sigma)) for k in range(radius + 1)]
    total = g[0] + 2 * sum(g[1:])
    w = [0] + [round(65536 * g[k] / total) for k in range(1, radius + 1)]
    w[0] = 65536 - 2 * sum(w[1:])
    return w


def ref_blur(img: np.ndarray, r: int) -> np.ndarray:
    w = blur_weights(r)
    h, wd, _ = img.shape
    p = np.pad(img.astype(np.int64), ((0, 0), (r, r), (0, 0)), mode="edge")
    t = (sum(w[abs(k)] * p[:, r + k : r + k + wd] for k in range(-r, r + 1)) + 32768) >> 16
    p = np.pad(t, ((r, r), (0, 0), (0, 0)), mode="edge")
    out = (sum(w[abs(k)] * p[r + k : r + k + h] for k in range(-r, r + 1)) + 32768) >> 16
    return out.astype(np.uint8)


def ref_edges(img: np.ndarray) -> np.ndarray:
    y = luma(img)
    h, w = y.shape
    p = np.pad(y, 1, mode="edge")

    def at(dy: int, dx: int) -> np.ndarray:
        return p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    gx = (at(-1, 1) + 2 * at(0, 1) + at(1, 1)) - (at(-1, -1) + 2 * at(0, -1) + at(1, -1))
    gy = (at(1, -1) + 2 * at(1, 0) + at(1, 1)) - (at(-1, -1) + 2 * at(-1, 0) + at(-1, 1))
    n = np.minimum(gx * gx + gy * gy, 65025)
    m = np.array([math.isqrt(int(v)) for v in n.ravel()], dtype=np.uint8).reshape(h, w)
    out = np.repeat(m[..., None], 4, axis=2)
    out[..., 3] = 255
    return out


def resize_axis(n_in: int, n_out: int):
    out = []
    for i in range(n_out):
        num = max(0, (2 * i + 1) * n_in - n_out)
        den = 2 * n_out
        i0 = num // den
        out.append((i0, min(i0 + 1, n_in - 1), (num - i0 * den) * 256 // den))
    return out


def ref_resize(img: np.ndarray, ow: int, oh: int) -> np.ndarray:
    h, w, _ = img.shape
    a = img.astype(np.int64)
    xs, ys = resize_axis(w, ow), resize_axis(h, oh)
    out = np.empty((oh, ow, 4), np.uint8)
    x0 = np.array([x[0] for x in xs])
    x1 = np.array([x[1] for x in xs])
    fx = np.array([x[2] for x in xs])[:, None]
    for oy, (y0, y1, fy) in enumerate(ys):
        top = a[y0, x0] * (256 - fx) + a[y0, x1] * fx
        bot = a[y1, x0] * (256 - fx) + a[y1, x1] * fx
        out[oy] = (top * (256 - fy) + bot * fy + 32768) >> 16
    return out


def ref_mandelbrot(w, h, center_x, center_y, scale, max_iter, row_start, row_end) -> bytes:
    step = scale / w
    out = bytearray()
    for py in range(row_start, row_end or h):
        cy = center_y - ((py + 0.5) - h * 0.5) * step
        for px in range(w):
            cx = center_x + ((px + 0.5) - w * 0.5) * step
            zx = zy = 0.0
            n = 0
            while n < max_iter:
                x2, y2 = zx * zx, zy * zy
                if x2 + y2 > 4.0:
                    break
                zy = 2.0 * zx * zy + cy
                zx = x2 - y2 + cx
                n += 1
            if n >= max_iter:
                out += bytes((0, 0, 0, 255))
            else:
                t = n / max_iter
                u = 1.0 - t
                r = int(9.0 * u * t * t * t * 255.0)
                g = int(15.0 * u * u * t * t * 255.0)
                b = int(8.5 * u * u * u * t * 255.0)
                out += bytes((r, g, b, 255))
    return bytes(out)


def lane_sum(v: np.ndarray) -> float:
    """Four lanes (element i in lane i % 4), each summed in order, then (l0+l1)+(l2+l3)."""
    with np.errstate(over="ignore", invalid="ignore"):  # huge values overflow to inf, as in C
        lanes = [float(np.cumsum(v[j::4])[-1]) if v[j::4].size else 0.0 for j in range(4)]
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])


def ref_stats(x: np.ndarray, bins: int) -> list[float]:
    fin = np.isfinite(x)
    count = int(fin.sum())
    if count == 0:
        return [0.0, math.nan, math.nan, math.nan, math.nan] + [0.0] * bins
    mean = lane_sum(np.where(fin, x, 0.0)) / count
    with np.errstate(over="ignore", invalid="ignore"):
        d = np.where(fin, x - mean, 0.0)
        std = math.sqrt(lane_sum(d * d) / count)
    lo, hi = float(x[fin].min()), float(x[fin].max())
    scale = bins / (hi - lo) if hi > lo else 0.0
    counts = [0] * bins
    with np.errstate(over="ignore", invalid="ignore"):
        for v in x[fin]:
            t = (float(v) - lo) * scale
            counts[int(t) if t < bins else bins - 1] += 1
    return [float(count), mean, std, lo, hi] + [float(c) for c in counts]


def ref_sort_f64(x: np.ndarray) -> bytes:
    bits = x.view(np.uint64)
    nan = np.isnan(x)
    top = np.uint64(1 << 63)
    keys = np.where(bits >= top, ~bits, bits | top)[~nan]
    order = np.argsort(keys, kind="stable")
    return np.concatenate([x[~nan][order], x[nan]]).tobytes()


def same_floats(got: list[float], want: list[float]) -> bool:
    return all((math.isnan(a) and math.isnan(b)) or a == b for a, b in zip(got, want, strict=True))


# ---- image ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("h", "w"), IMAGE_SIZES)
def test_grayscale(rt, h, w):
    img = rgba(h, w)
    got = run(rt, "image.grayscale", img.tobytes(), width=w, height=h)
    assert got == ref_grayscale(img).tobytes()


@pytest.mark.parametrize(("h", "w"), IMAGE_SIZES)
@pytest.mark.parametrize("radius", [1, 2, 3, 7, 16])
def test_blur(rt, h, w, radius):
    img = rgba(h, w, seed=radius)
    got = run(rt, "image.blur", img.tobytes(), width=w, height=h, radius=radius)
    assert got == ref_blur(img, radius).tobytes()


def test_blur_default_radius_is_2_and_flat_image_stays_flat(rt):
    img = np.full((9, 13, 4), 77, np.uint8)
    got = rt.run("image.blur", img.tobytes(), {"width": 13, "height": 9})
    assert got.params["radius"] == 2
    assert got.output == img.tobytes()


@pytest.mark.parametrize(("h", "w"), IMAGE_SIZES)
def test_edges(rt, h, w):
    img = rgba(h, w)
    got = run(rt, "image.edges", img.tobytes(), width=w, height=h)
    assert got == ref_edges(img).tobytes()


def test_edges_of_a_step_saturate(rt):
    img = np.zeros((4, 6, 4), np.uint8)
    img[:, 3:] = 255
    out = np.frombuffer(run(rt, "image.edges", img.tobytes(), width=6, height=4), np.uint8)
    out = out.reshape(4, 6, 4)
    assert (out[:, 2:4, 0] == 255).all() and (out[:, [0, 5], 0] == 0).all()


@pytest.mark.parametrize(("h", "w"), IMAGE_SIZES)
@pytest.mark.parametrize("scale", [(1, 1), (2.5, 3), (0.34, 0.5), (None, None)])
def test_resize(rt, h, w, scale):
    ow, oh = (
        (7, 5) if scale[0] is None else (max(1, round(w * scale[0])), max(1, round(h * scale[1])))
    )
    img = rgba(h, w)
    got = run(rt, "image.resize", img.tobytes(), width=w, height=h, out_width=ow, out_height=oh)
    assert got == ref_resize(img, ow, oh).tobytes()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.integers(1, 40),
    st.integers(1, 40),
    st.integers(1, 16),
    st.integers(1, 50),
    st.integers(1, 50),
    st.integers(0, 2**32 - 1),
)
def test_image_kernels_on_random_sizes(rt, w, h, radius, ow, oh, seed):
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 4), dtype=np.uint8)
    data = img.tobytes()
    assert run(rt, "image.grayscale", data, width=w, height=h) == ref_grayscale(img).tobytes()
    blurred = run(rt, "image.blur", data, width=w, height=h, radius=radius)
    assert blurred == ref_blur(img, radius).tobytes()
    assert run(rt, "image.edges", data, width=w, height=h) == ref_edges(img).tobytes()
    resized = run(rt, "image.resize", data, width=w, height=h, out_width=ow, out_height=oh)
    assert resized == ref_resize(img, ow, oh).tobytes()


def test_image_rows_tile_with_halo(rt):
    """The manifest's tiles/halo promise: a band rendered with its halo, cropped, is exact."""
    h, w, r = 40, 23, 3
    img = rgba(h, w)
    full = np.frombuffer(
        run(rt, "image.blur", img.tobytes(), width=w, height=h, radius=r), np.uint8
    )
    full = full.reshape(h, w, 4)
    assert rt.spec("image.blur").tiles == {"axis": "rows", "halo": "radius"}
    start, end = 10, 25
    band = img[start - r : end + r]
    out = run(rt, "image.blur", band.tobytes(), width=w, height=band.shape[0], radius=r)
    out = np.frombuffer(out, np.uint8).reshape(band.shape)
    assert (out[r:-r] == full[start:end]).all()


# ---- fractal ----------------------------------------------------------------------------------

MANDEL_CASES = [
    (1, 1, -0.5, 0.0, 3.0, 50, 0, 0),
    (37, 21, -0.5, 0.1, 3.0, 100, 0, 0),
    (40, 30, -0.7435, 0.1314, 0.01, 300, 5, 17),
    (16, 9, 0.3, -0.6, 0.2, 1, 0, 9),
    (8, 8, 4.0, 4.0, 16.0, 20, 7, 8),
]


@pytest.mark.parametrize("case", MANDEL_CASES)
def test_mandelbrot(rt, case):
    names = ("width", "height", "center_x", "center_y", "scale", "max_iter", "row_start", "row_end")
    got = rt.run("fractal.mandelbrot", b"", dict(zip(names, case, strict=True))).output
    assert got == ref_mandelbrot(*case)


def test_mandelbrot_tiles_join_into_the_full_image(rt):
    p = {"width": 31, "height": 20, "max_iter": 64}
    full = run(rt, "fractal.mandelbrot", b"", **p)
    tiles = [
        run(rt, "fractal.mandelbrot", b"", **p, row_start=a, row_end=b)
        for a, b in [(0, 7), (7, 8), (8, 20)]
    ]
    assert b"".join(tiles) == full
    assert len(full) == 31 * 20 * 4


# ---- data -------------------------------------------------------------------------------------


def stats(rt, x: np.ndarray, bins: int) -> list[float]:
    out = run(rt, "data.stats", x.astype("<f8").tobytes(), bins=bins)
    return list(struct.unpack(f"<{5 + bins}d", out))


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 7, 1000, 12345])
@pytest.mark.parametrize("bins", [1, 10, 64])
def test_stats_random(rt, n, bins):
    x = np.random.default_rng(n + bins).standard_normal(n) * 100
    if n > 10:
        x[::7] = np.nan
        x[3], x[5] = np.inf, -np.inf
    assert same_floats(stats(rt, x, bins), ref_stats(x, bins))


def test_stats_edge_cases(rt):
    empty = stats(rt, np.array([]), 3)
    assert empty[0] == 0 and all(math.isnan(v) for v in empty[1:5]) and empty[5:] == [0.0] * 3
    only_nan = stats(rt, np.array([np.nan, np.inf, -np.inf]), 2)
    assert only_nan[0] == 0 and only_nan[5:] == [0, 0]
    flat = stats(rt, np.full(9, 2.5), 4)
    assert flat == [9, 2.5, 0.0, 2.5, 2.5, 9, 0, 0, 0]
    ends = stats(rt, np.array([0.0, 1.0, 2.0, 3.0, 4.0]), 4)  # max lands in the last bin
    assert ends[5:] == [1, 1, 1, 2]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=40),
    st.integers(1, 20),
)
def test_stats_property(rt, values, bins):
    x = np.array(values, dtype=np.float64)
    assert same_floats(stats(rt, x, bins), ref_stats(x, bins))


def test_stats_decodes_for_the_host(rt):
    from veraltheim.wasm import decode_output

    out = rt.run("data.stats", np.arange(10.0).tobytes(), {"bins": 4}).output
    d = decode_output(rt.spec("data.stats"), out)
    assert d["count"] == 10 and d["histogram"]["counts"] == [3, 2, 2, 3]


SORT_F64_CASES = {
    "empty": np.array([]),
    "one": np.array([1.5]),
    "random": np.random.default_rng(1).standard_normal(5000) * 1e6,
    "specials": np.array([np.nan, 0.0, -0.0, np.inf, -np.inf, 1e-310, -1e-310, -np.nan, 3.0, 0.0]),
    "small ints (radix passes skipped)": np.random.default_rng(2).integers(0, 50, 3001) * 1.0,
    "nans, even passes": np.concatenate([np.arange(100.0), [np.nan, -np.nan], np.arange(5.0)]),
    # Only the lowest 11-bit digit differs: one radix pass, so the result ends in the other buffer.
    "nans, one pass": np.concatenate(
        [
            1.0 + np.arange(100.0)[::-1] * 2.0**-52,
            [np.nan, -np.nan, np.nan],
            1.0 + np.arange(5.0) * 2.0**-52,
        ]
    ),
    "sorted": np.arange(777.0),
    "reversed": np.arange(777.0)[::-1].copy(),
}


@pytest.mark.parametrize("name", list(SORT_F64_CASES))
def test_sort_f64(rt, name):
    x = SORT_F64_CASES[name]
    # NaNs with payloads and signs keep their bits.
    x = x.copy()
    if x.size > 3:
        bits = x.view(np.uint64)
        bits[x.size // 2] = 0xFFF8_0000_0000_1234
    got = run(rt, "data.sort", x.tobytes(), dtype="f64")
    assert got == ref_sort_f64(x)
    y = np.frombuffer(got)
    assert np.array_equal(y, np.sort(x), equal_nan=True)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=60))
def test_sort_f64_property(rt, values):
    x = np.array(values, dtype=np.float64)
    assert run(rt, "data.sort", x.tobytes(), dtype="f64") == ref_sort_f64(x)


@pytest.mark.parametrize("n", [0, 1, 2, 1000, 70001])
def test_sort_i32(rt, n):
    x = np.random.default_rng(n).integers(-(2**31), 2**31, n, dtype=np.int64).astype("<i4")
    if n > 2:
        x[:2] = [-(2**31), 2**31 - 1]
    got = np.frombuffer(run(rt, "data.sort", x.tobytes(), dtype="i32"), "<i4")
    assert np.array_equal(got, np.sort(x))


# ---- hash -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 3, 55, 56, 63, 64, 65, 119, 120, 1000, (1 << 20) + 3])
def test_sha256(rt, n):
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    assert run(rt, "hash.sha256", data) == hashlib.sha256(data).digest()


# ---- progress and limits ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kernel", "data", "params"),
    [
        ("image.blur", bytes(256 * 300 * 4), {"width": 256, "height": 300, "radius": 4}),
        ("fractal.mandelbrot", b"", {"width": 512, "height": 128, "max_iter": 200}),
        ("hash.sha256", bytes(3 << 20), {}),
        ("data.stats", bytes(8 << 20), {"bins": 8}),
        ("data.sort", np.arange(300000.0)[::-1].tobytes(), {"dtype": "f64"}),
    ],
)
def test_long_kernels_report_progress(rt, kernel, data, params):
    seen: list[tuple[int, int]] = []
    rt.run(kernel, data, params, progress=lambda d, t: seen.append((d, t)))
    assert seen, "no progress reported"
    assert all(0 < d <= t for d, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert len({t for _, t in seen}) == 1
    assert seen[-1][0] == seen[-1][1], "the last report is not 100%"


def largest_that_fits(try_size, lo: int, hi: int) -> int:
    """Largest n in [lo, hi) for which try_size(n) does not raise MemoryLimitExceeded."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            try_size(mid)
            lo = mid
        except MemoryLimitExceeded:
            hi = mid
    return lo


def test_largest_inputs_the_memory_limit_allows(tmp_path):
    limit = 8 << 20
    small = Runtime(cache_dir=tmp_path, memory_limit_bytes=limit)
    blob = np.random.default_rng(5).integers(0, 256, limit, dtype=np.uint8).tobytes()

    # sha256 needs the input plus a few hundred bytes beyond the module's own 64 KiB + data.
    n = largest_that_fits(lambda k: small.run("hash.sha256", blob[:k]), 1 << 20, limit)
    assert n > limit - (256 << 10)
    assert small.run("hash.sha256", blob[:n]).output == hashlib.sha256(blob[:n]).digest()
    with pytest.raises(MemoryLimitExceeded):
        small.run("hash.sha256", blob[: n + 4096])

    # grayscale at the widest allowed row: input + output must fit.
    w = load_manifest().kernel("image.grayscale").param("width").max
    row = w * 4

    def gray(rows: int) -> bytes:
        return small.run("image.grayscale", blob[: rows * row], {"width": w, "height": rows}).output

    rows = largest_that_fits(gray, 1, limit // row)
    assert rows >= (limit // row) // 2 - 2
    img = np.frombuffer(blob[: rows * row], np.uint8).reshape(rows, w, 4)
    assert gray(rows) == ref_grayscale(img).tobytes()


# ---- the C side on its own: param checks, error messages, allocator ---------------------------


class RawModule:
    """A module driven with wasmtime directly, bypassing the host's own param checks."""

    def __init__(self, name: str, memory_limit: int | None = None) -> None:
        spec = load_manifest().modules[name]
        engine = wasmtime.Engine()
        self.store = wasmtime.Store(engine)
        if memory_limit:
            self.store.set_limits(memory_size=memory_limit)
        module = wasmtime.Module(engine, spec.file.read_bytes())
        ftype = wasmtime.FuncType([wasmtime.ValType.i32(), wasmtime.ValType.i32()], [])
        progress = wasmtime.Func(self.store, ftype, lambda d, t: None)
        imports = [progress for _ in module.imports]
        self.ex = wasmtime.Instance(self.store, module, imports).exports(self.store)

    def __getattr__(self, name: str):
        f = self.ex[name]
        return lambda *args: f(self.store, *args)

    def mem(self) -> int:
        return ctypes.addressof(self.ex["memory"].data_ptr(self.store).contents)

    def call(self, export: str, data: bytes, params: list[float]) -> tuple[int, str | None]:
        head = 16 + 8 * len(params)
        base = self.vh_begin(head + len(data))
        ctypes.memmove(self.mem() + base + 16, struct.pack(f"<{len(params)}d", *params), head - 16)
        ctypes.memmove(self.mem() + base + head, data, len(data))
        rc = self.ex[export](self.store, base + head, len(data), base + 16, len(params), base)
        err = self.vh_error()
        return rc, (ctypes.string_at(self.mem() + err).decode() if err else None)


@pytest.mark.parametrize(
    ("module", "export", "data", "params", "rc", "message"),
    [
        ("image", "image_blur", bytes(16), [2, 2, 17], -1, "radius must be an integer in 1..16"),
        ("image", "image_blur", bytes(16), [2, 2, 1.5], -1, "radius"),
        ("image", "image_blur", bytes(16), [2, 2], -1, "wrong number of params"),
        ("image", "image_grayscale", bytes(15), [2, 2], -2, "width * height * 4"),
        ("image", "image_grayscale", bytes(16), [math.nan, 2], -1, "width"),
        ("image", "image_resize", bytes(4), [1, 1, 0, 1], -1, "out_width"),
        ("fractal", "fractal_mandelbrot", b"", [4, 4, 0, 0, 3, 10, 3, 2], -1, "row_start"),
        ("fractal", "fractal_mandelbrot", b"", [4, 4, 0, 0, 0, 10, 0, 0], -1, "scale"),
        ("fractal", "fractal_mandelbrot", b"", [4, 4, math.inf, 0, 1, 10, 0, 0], -1, "center"),
        ("data", "data_stats", bytes(12), [4], -2, "multiple of 8"),
        ("data", "data_stats", bytes(16), [0], -1, "bins"),
        ("data", "data_sort", bytes(6), [1], -2, "multiple of 4"),
        ("data", "data_sort", bytes(8), [2], -1, "dtype"),
        ("hash", "hash_sha256", b"", [1], -1, "no params"),
    ],
)
def test_c_rejects_bad_params_and_input(module, export, data, params, rc, message):
    raw = RawModule(module)
    got_rc, got_msg = raw.call(export, data, params)
    assert got_rc == rc
    assert got_msg is not None and message in got_msg


def test_c_out_of_memory_is_minus_3(tmp_path):
    raw = RawModule("image", memory_limit=4 << 20)
    w = h = 600  # 1.4 MB in; blur needs two more buffers of that size
    rc, msg = raw.call("image_blur", bytes(w * h * 4), [w, h, 2])
    assert rc == -3 and "memory" in msg


def test_allocator_aligns_resets_and_fails_cleanly():
    raw = RawModule("hash", memory_limit=2 << 20)
    a = raw.vh_begin(3)
    b = raw.vh_alloc(5)
    assert a % 16 == 0 and b % 16 == 0 and b >= a + 16
    assert raw.vh_error() == 0
    raw.vh_reset()
    assert raw.vh_alloc(1) == a  # reset frees everything
    assert raw.vh_alloc(4 << 20) == 0  # over the store's limit
    assert raw.vh_error() != 0
    assert raw.vh_begin(100) == a  # usable again after a failure


# ---- the scalar C path (native build) computes the same bytes as the SIMD wasm path -----------


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    from bench._native import build_native, gcc

    if gcc() is None:
        pytest.skip("gcc is not installed: cannot build the native (scalar) kernels")
    return build_native(tmp_path_factory.mktemp("native"))


NATIVE_CASES = [
    ("image.grayscale", (13, 29), {}),
    ("image.blur", (13, 29), {"radius": 5}),
    ("image.edges", (13, 29), {}),
    ("image.resize", (13, 29), {"out_width": 40, "out_height": 7}),
    ("fractal.mandelbrot", None, {"width": 33, "height": 17, "max_iter": 90}),
    ("data.stats", 1001, {"bins": 16}),
    ("data.sort", 1001, {"dtype": "f64"}),
    ("data.sort", 1002, {"dtype": "i32"}),
    ("hash.sha256", 1003, {}),
]


@pytest.mark.parametrize(("kernel", "shape", "params"), NATIVE_CASES)
def test_native_scalar_path_matches_wasm(rt, native, kernel, shape, params):
    rng = np.random.default_rng(7)
    if kernel.startswith("image."):
        h, w = shape
        params = {"width": w, "height": h, **params}
        data = rgba(h, w).tobytes()
    elif shape is None:
        data = b""
    else:
        x = rng.standard_normal(shape) * 1e3
        x[::9] = np.nan
        data = x.tobytes()
    spec = rt.spec(kernel)
    block = spec.param_block(spec.validate_params(params))
    assert native[spec.module].call(spec.export, data, block) == run(rt, kernel, data, **params)


def test_a_long_kernel_stops_at_its_deadline(rt):
    """The unrolled inner loops still give the host's epoch check a back edge to run on."""
    from veraltheim.wasm import DeadlineExceeded

    params = {"width": 1024, "height": 768, "center_x": -0.75, "scale": 0.5, "max_iter": 1000000}
    with pytest.raises(DeadlineExceeded):
        rt.run("fractal.mandelbrot", b"", params, deadline_s=0.1)
    # The thread's instance was thrown away; the next job runs on a fresh one.
    assert run(rt, "fractal.mandelbrot", b"", width=8, height=8) == ref_mandelbrot(
        8, 8, -0.5, 0.0, 3.0, 256, 0, 0
    )
