"""The worker-process pool on its own: real processes, native (numpy) kernels, no service."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import numpy as np
import pytest
from veraltheim.protocol.reasons import Reason
from veraltheim.service.compute.errors import ComputeError
from veraltheim.service.compute.pool import ComputePool
from veraltheim.wasm import Runtime

from tests.support.compute import LONG_MANDELBROT

MIB = 1024 * 1024


def values(n: int, seed: int = 1) -> bytes:
    return np.random.default_rng(seed).standard_normal(n).astype("<f8").tobytes()


@pytest.fixture
async def pool():
    p = ComputePool(workers=2, queue_limit=1, job_deadline_s=20.0, memory_limit_bytes=64 * MIB)
    await p.start()
    await p.wait_ready()
    yield p
    procs = [w.proc for w in p.workers]
    await p.stop()
    assert procs and not any(proc.is_alive() for proc in procs)


async def wait_for(predicate, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


LONG = Runtime().validate("fractal.mandelbrot", b"", LONG_MANDELBROT)


def long_job(pool: ComputePool, **kw):
    """A wasm job that is still running while the test acts on it."""
    return pool.submit("fractal.mandelbrot", b"", LONG, **kw)


async def test_runs_a_job_and_matches_numpy(pool):
    data = values(1000)
    result = await pool.submit("data.percentiles", data, {"steps": 4}).future
    expected = np.percentile(np.frombuffer(data), [0, 25, 50, 75, 100])
    assert np.frombuffer(result.output).tolist() == expected.tolist()
    assert result.workers[0] in [w.pid for w in pool.workers]
    assert result.total_ms >= result.run_ms >= 0


async def test_progress_reaches_the_caller(pool):
    seen: list[tuple[int, int]] = []
    job = pool.submit(
        "data.percentiles",
        values(3_000_000),
        {"steps": 4},
        progress=lambda d, t: seen.append((d, t)),
    )
    await job.future
    assert seen and seen[-1][0] == seen[-1][1] == 3_000_000
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


async def test_full_queue_is_busy_at_once(pool):
    running = [long_job(pool), long_job(pool)]
    queued = long_job(pool)
    with pytest.raises(ComputeError) as err:
        long_job(pool)
    assert err.value.reason == Reason.BUSY and err.value.extra["queue_depth"] == 1
    for job in [*running, queued]:
        pool.cancel(job)


async def test_cancel_queued_and_running(pool):
    running = [long_job(pool), long_job(pool)]
    queued = long_job(pool)
    await wait_for(lambda: all(t.done for j in running for t in j.tasks))
    pids = [w.pid for w in pool.workers]
    assert pool.cancel(queued) and pool.cancel(running[0])
    for job in (queued, running[0]):
        with pytest.raises(ComputeError) as err:
            await job.future
        assert err.value.reason == Reason.CANCELLED
    await wait_for(lambda: pool.load()["busy"] == 1)  # the worker stopped on its own
    assert [w.pid for w in pool.workers] == pids
    pool.cancel(running[1])


async def test_deadline(pool):
    job = long_job(pool, deadline_s=0.05)
    with pytest.raises(ComputeError) as err:
        await job.future
    assert err.value.reason == Reason.DEADLINE


async def test_killed_worker_is_replaced_and_only_its_job_fails(pool):
    job, neighbour = long_job(pool), long_job(pool)
    await wait_for(lambda: job.tasks and job.tasks[0].done > 0)
    victim = job.tasks[0].worker.pid
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(ComputeError) as err:
        await job.future
    assert err.value.reason == Reason.WORKER_CRASHED and str(victim) in err.value.message
    pool.cancel(neighbour)  # it was still running on the other worker, undisturbed
    with pytest.raises(ComputeError, match="cancelled"):
        await neighbour.future
    await wait_for(lambda: victim not in [w.pid for w in pool.workers])
    await wait_for(lambda: all(w.ready.is_set() for w in pool.workers))
    assert len(pool.workers) == 2
    result = await pool.submit("data.percentiles", values(100), {"steps": 1}).future
    assert len(result.output) == 16
    assert pool.load()["crashes"] == 1


async def test_the_loop_keeps_turning_while_a_crashed_worker_is_reaped(pool):
    """Reaping a dead worker waits on the process: that wait must not stop the event loop."""
    job = long_job(pool)
    await wait_for(lambda: job.tasks and job.tasks[0].done > 0)
    worker = job.tasks[0].worker
    real_join = worker.proc.join
    reaping, released = threading.Event(), threading.Event()

    def slow_join(timeout=None):  # a process that takes its time to go
        reaping.set()
        released_in_time.append(released.wait(10))
        return real_join(timeout)

    released_in_time: list[bool] = []
    worker.proc.join = slow_join
    os.kill(worker.pid, signal.SIGKILL)
    await asyncio.to_thread(reaping.wait, 10)
    # Only the loop releases the join: had the join blocked the loop, it would time out first.
    assert reaping.is_set() and not job.future.done()
    released.set()
    with pytest.raises(ComputeError) as err:
        await job.future
    assert released_in_time == [True]
    assert err.value.reason == Reason.WORKER_CRASHED and "exit code -9" in err.value.message


async def test_bad_input_from_a_worker_is_an_error_not_a_crash(pool):
    nan = np.full(8, np.nan).tobytes()
    with pytest.raises(ComputeError) as err:
        await pool.submit("data.percentiles", nan, {"steps": 2}).future
    assert err.value.reason == "bad_input" and "NaN" in err.value.message
    assert pool.load()["crashes"] == 0


async def test_worker_start_up_counts_as_queue_time_not_run_time():
    """A job sent before the workers are ready waits for them in the queue; its run time is
    the warm kernel's (start-up there would teach clients that the service is slow)."""
    p = ComputePool(workers=1, queue_limit=1, job_deadline_s=60.0, memory_limit_bytes=64 * MIB)
    try:
        job = p.submit("hash.sha256", b"abc", {})  # spawns the worker, which is not ready yet
        assert not p.workers[0].ready.is_set() and job.tasks == []
        result = await job.future
        # Spawning a Python process and loading wasmtime takes far longer than hashing 3 bytes.
        assert result.queue_ms > result.run_ms
    finally:
        await p.stop()


def test_a_worker_warms_up_before_ready_and_honours_a_cancel_that_beats_its_job():
    import multiprocessing
    import threading

    from veraltheim.service.compute.worker import _Worker

    ours, theirs = multiprocessing.Pipe()
    worker = _Worker(theirs, None, 64 * MIB)
    # The cancel arrives before the runner takes the job: the job must not run at all.
    worker.handle(("run", 1, "fractal.mandelbrot", LONG, b"", 60.0))
    worker.handle(("cancel", 1))
    worker.handle(("run", 2, "hash.sha256", {}, b"abc", 60.0))
    worker.jobs.put(None)
    runner = threading.Thread(target=worker.run_jobs)
    runner.start()
    runner.join(60)
    assert ours.recv()[0] == "ready"
    # Every module was loaded before that: load_module has nothing left to do (0 s).
    runtime = worker.runtime
    assert all(runtime.load_module(m).elapsed_s == 0.0 for m in runtime.manifest.modules)
    assert ours.recv()[:3] == ("error", 1, Reason.CANCELLED)
    assert ours.recv()[:2] == ("done", 2)
    assert worker.pending == {}
    ours.close()
    theirs.close()
