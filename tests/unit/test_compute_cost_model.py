"""The cost model's arithmetic and learning (pure: no I/O)."""

from __future__ import annotations

import pytest
from veraltheim.client.compute.cost_model import CostModel, unit_and_seed, work_units

BLUR = {
    "cost": {"ns_per_byte": 2.0},
    "tiles": {"axis": "rows", "halo": 2},
    "output": {"kind": "rgba8"},
}
MANDEL = {
    "cost": {"ns_per_iteration": 1.5},
    "tiles": {"axis": "rows", "halo": 0},
    "output": {"kind": "rgba8"},
}


def model(**load) -> CostModel:
    m = CostModel()
    m.add_kernel("image.blur", BLUR, local=True, remote=True)
    m.add_kernel("fractal.mandelbrot", MANDEL, local=True, remote=True)
    m.learn_rtt(10.0)
    m.learn_load({"workers": 4, "busy": 0, "queue_depth": 0, "max_tiles": 4, **load})
    return m


def test_units_follow_the_cost_hint():
    assert unit_and_seed({"ns_per_pixel": 3}) == ("pixel", 3.0)
    assert unit_and_seed({})[0] == "byte"
    p = {"width": 100, "height": 50, "row_start": 10, "row_end": 30, "max_iter": 200}
    assert work_units("iteration", 0, p) == 100 * 20 * 200
    assert work_units("pixel", 0, {"width": 8, "height": 4}) == 32
    assert work_units("byte", 1234, {}) == 1234


def test_tiny_job_is_local_and_big_tileable_job_is_remote_on_a_fast_link():
    m = model()
    small = m.estimate("image.blur", 4 * 16 * 16, {"width": 16, "height": 16})
    assert small.local_ms < small.remote_ms  # 10 ms of round trip dwarfs 2 us of work
    p = {"width": 1000, "height": 1000, "row_start": 0, "row_end": 1000, "max_iter": 500}
    big = m.estimate("fractal.mandelbrot", 0, p)
    assert big.remote_ms < big.local_ms  # 4 workers, almost no bytes to move
    assert big.remote_ms == pytest.approx(
        10 + big.bytes_down * 8000 / 100e6 + big.local_ms / 4, rel=0.05
    )


def test_busy_service_adds_queue_wait():
    job = ("image.blur", 4_000_000, {"width": 1000, "height": 1000})
    idle = model().estimate(*job)
    assert idle.queue_ms == 0
    busy = model(
        busy=4, queue_depth=6, running_ms=[10, 30, 45, 5], throughput={"x": {"recent_run_ms": 50.0}}
    )
    est = busy.estimate(*job)
    # first free worker: the one 30 ms into a 50 ms job (20 left, but at least 30 as observed)
    assert est.queue_ms == pytest.approx(30 + 6 * 50 / 4)
    assert est.remote_ms > idle.remote_ms + est.queue_ms - 1
    # no finished jobs to go by: a running job is expected to take as long again
    unknown = model(busy=4, workers=4, queue_depth=0, running_ms=[200, 400, 300, 250])
    assert unknown.estimate(*job).queue_ms == pytest.approx(200)


def test_learning_moves_estimates_toward_measurements():
    m = model()
    for _ in range(20):
        m.learn_local("image.blur", 1e6, 30.0, 1_000_000, 1_000_000)  # 30 ns/byte measured
    assert m.kernels["image.blur"].local_ns == pytest.approx(30.0 - 0.15 / 1e6 * 1e6, rel=0.02)
    for _ in range(20):
        m.learn_transfer(12.0, 1000)  # small: RTT
    assert m.rtt_ms == pytest.approx(12.0, rel=0.01)
    for _ in range(20):
        m.learn_transfer(12.0 + 80.0, 1_000_000)  # 1 MB in 80 ms beyond the RTT: 100 Mbit/s
    assert m.bandwidth_bps == pytest.approx(1e8, rel=0.02)
    m.learn_remote(
        "image.blur",
        1e6,
        run_ms=5.0,
        tiles=4,
        wall_ms=100.0,
        server_ms=6.0,
        bytes_moved=2_000_000,
        data_len=1_000_000,
        out_len=1_000_000,
    )
    assert m.kernels["image.blur"].remote_ns == pytest.approx(20.0)  # 5 ms x 4 workers / 1e6


def test_local_only_and_remote_only_kernels():
    m = CostModel()
    m.add_kernel("a", {"cost": {"ns_per_byte": 1}}, local=True)
    m.add_kernel("b", {"cost": {"ns_per_byte": 1}}, remote=True)
    assert m.estimate("a", 100, {}).remote_ms is None
    b = m.estimate("b", 100, {})
    assert b.local_ms is None and b.remote_ms is not None


def test_local_jobs_already_running_share_the_cores():
    m = model()
    m.local_cores = 2
    job = ("image.blur", 4_000_000, {"width": 1000, "height": 1000})
    alone = m.estimate(*job).local_ms
    m.local_running = 1  # two jobs on two cores: no slower
    assert m.estimate(*job).local_ms == pytest.approx(alone)
    m.local_running = 3  # four jobs on two cores: twice as long
    assert m.estimate(*job).local_ms == pytest.approx(0.15 + (alone - 0.15) * 2)


def test_one_cold_outlier_does_not_set_the_speed():
    m = model()
    units = 1e6
    common = dict(wall_ms=0.0, server_ms=0.0, bytes_moved=0, data_len=0, out_len=0)
    m.learn_remote("image.blur", units, run_ms=200.0, tiles=1, **common)  # a cold first run
    m.learn_remote("image.blur", units, run_ms=2.0, tiles=1, **common)
    assert m.kernels["image.blur"].remote_ns == pytest.approx(2.0)
    m.learn_local("image.blur", units, 300.0, 0, 0)
    m.learn_local("image.blur", units, 3.0, 0, 0)
    assert m.kernels["image.blur"].local_ns < 3.0
