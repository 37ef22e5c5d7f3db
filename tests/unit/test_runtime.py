"""The kernel runtime's limits and failure paths, on the WAT modules of tests/support/wat.py."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from veraltheim.wasm import (
    BadInput,
    Cancelled,
    CancelToken,
    DeadlineExceeded,
    IntegrityError,
    KernelError,
    MemoryLimitExceeded,
    Runtime,
    UnknownKernel,
)

from tests.support.wat import (
    EVIL_MODULE_WAT,
    TEST_KERNELS,
    UNGRANTED_MODULE_WAT,
    busy_reference,
    write_manifest,
    write_test_manifest,
)

MEMORY_LIMIT = 32 << 20
WAIT_S = 20  # upper bound for waits on events; never reached when things work


@pytest.fixture
def manifest(tmp_path):
    return write_test_manifest(tmp_path / "modules")


@pytest.fixture
def rt(manifest, tmp_path):
    return Runtime(manifest, cache_dir=tmp_path / "cache", memory_limit_bytes=MEMORY_LIMIT)


def busy(rt, n, **kw) -> int:
    return int.from_bytes(rt.run("test.busy", b"", {"n": n}, **kw).output, "little")


def test_runs_a_kernel_and_reports_the_job(rt):
    result = rt.run("test.echo", b"hello wasm", {})
    assert result.output == b"hello wasm"
    assert result.kernel == "test.echo"
    assert result.params == {}
    assert result.elapsed_s > 0
    assert busy(rt, 1000) == busy_reference(1000)


@pytest.mark.parametrize(
    "data",
    [
        bytearray(b"abc" * 50),
        memoryview(b"--abc" * 50)[2:],
        np.arange(37, dtype=np.float64),
        b"",
    ],
    ids=["bytearray", "memoryview-slice", "numpy", "empty"],
)
def test_accepts_any_contiguous_buffer(rt, data):
    assert rt.run("test.echo", data, {}).output == memoryview(data).tobytes()


def test_params_reach_the_kernel_as_f64_in_manifest_order(rt):
    out = rt.run("test.params", b"", {"width": 7, "dtype": "i32"}).output
    # width, sigma (default 1.5), dtype as the index of its choice
    assert np.frombuffer(out, "<f8").tolist() == [7.0, 1.5, 1.0]


def test_a_loop_that_never_ends_is_stopped_by_its_deadline(rt):
    with pytest.raises(DeadlineExceeded, match=r"test.spin: deadline of 0.05 s exceeded"):
        rt.run("test.spin", deadline_s=0.05)
    # The trapped instance was thrown away; the thread's next job works.
    assert rt.run("test.echo", b"after", {}).output == b"after"


def test_default_deadline_applies(manifest, tmp_path):
    rt = Runtime(manifest, cache_dir=tmp_path / "cache", default_deadline_s=0.05)
    with pytest.raises(DeadlineExceeded):
        rt.run("test.spin")


def test_a_kernel_out_of_memory_at_the_cap_fails_cleanly_and_the_next_job_works(rt):
    with pytest.raises(
        MemoryLimitExceeded, match=r"test.hog: test: no memory left \(limit 32 MiB\)$"
    ):
        rt.run("test.hog")
    assert rt.run("test.echo", b"x" * 1000, {}).output == b"x" * 1000
    assert busy(rt, 10) == busy_reference(10)


def test_memory_grow_failing_at_the_cap_then_a_fault_is_a_memory_limit(rt):
    with pytest.raises(MemoryLimitExceeded, match="memory limit"):
        rt.run("test.overrun")
    assert rt.run("test.echo", b"ok", {}).output == b"ok"


def test_input_larger_than_the_memory_cap_is_refused_before_running(rt):
    with pytest.raises(MemoryLimitExceeded, match="exceeds the memory limit"):
        rt.run("test.echo", bytes(MEMORY_LIMIT + 1), {})


def test_input_that_does_not_fit_beside_the_module_is_a_memory_limit(rt):
    with pytest.raises(MemoryLimitExceeded):
        rt.run("test.echo", bytes(MEMORY_LIMIT - 4096), {})
    assert rt.run("test.echo", b"small", {}).output == b"small"


def test_a_trap_is_a_kernel_error_with_the_trap_message_and_the_instance_is_replaced(rt):
    with pytest.raises(KernelError, match="unreachable") as info:
        rt.run("test.trap")
    assert type(info.value) is not BadInput
    assert rt.run("test.echo", b"fresh", {}).output == b"fresh"


def test_a_kernel_rejecting_its_params_is_bad_input_with_its_message(rt):
    with pytest.raises(BadInput, match=r"test.reject: bad params: test: params rejected"):
        rt.run("test.reject")


def test_a_tampered_module_is_refused(manifest, tmp_path):
    wasm_path = manifest.parent / "test.wasm"
    data = bytearray(wasm_path.read_bytes())
    data[-1] ^= 0xFF
    wasm_path.write_bytes(bytes(data))
    rt = Runtime(manifest, cache_dir=tmp_path / "cache")
    with pytest.raises(IntegrityError, match=r"sha256 .* the manifest says"):
        rt.run("test.echo", b"x", {})
    # It stays refused: nothing half-loaded is kept.
    with pytest.raises(IntegrityError):
        rt.run("test.echo", b"x", {})


def test_a_tampered_module_is_refused_even_when_its_compiled_code_is_cached(manifest, tmp_path):
    Runtime(manifest, cache_dir=tmp_path / "cache").load_module("test")
    wasm_path = manifest.parent / "test.wasm"
    wasm_path.write_bytes(wasm_path.read_bytes() + b"\x00")
    with pytest.raises(IntegrityError, match="sha256"):
        Runtime(manifest, cache_dir=tmp_path / "cache").run("test.echo", b"x", {})


def test_a_missing_module_file_is_an_integrity_error(manifest, tmp_path):
    (manifest.parent / "test.wasm").unlink()
    with pytest.raises(IntegrityError, match="cannot read"):
        Runtime(manifest, cache_dir=tmp_path / "cache").run("test.echo", b"x", {})


def test_a_module_importing_something_not_granted_is_refused(tmp_path):
    kernels = {"evil.echo": {**TEST_KERNELS["test.echo"], "module": "evil"}}
    manifest = write_manifest(tmp_path / "m", {"evil": EVIL_MODULE_WAT}, kernels)
    # The manifest itself lists the import, so even loading the manifest fails.
    with pytest.raises(IntegrityError, match="fd_write"):
        Runtime(manifest, cache_dir=tmp_path / "cache")


def test_an_import_the_manifest_hides_is_still_refused_at_load(tmp_path):
    import json

    kernels = {"evil.echo": {**TEST_KERNELS["test.echo"], "module": "evil"}}
    manifest = write_manifest(tmp_path / "m", {"evil": EVIL_MODULE_WAT}, kernels)
    raw = json.loads(manifest.read_text())
    raw["modules"]["evil"]["imports"] = []  # lie about it
    manifest.write_text(json.dumps(raw))
    rt = Runtime(manifest, cache_dir=tmp_path / "cache")
    with pytest.raises(
        IntegrityError, match=r"imports wasi_snapshot_preview1.fd_write, which the manifest"
    ):
        rt.run("evil.echo", b"", {})


def test_progress_import_without_a_progress_grant_is_refused(tmp_path):
    import json

    kernels = {"plain.echo": {**TEST_KERNELS["test.echo"], "module": "plain", "grants": []}}
    manifest = write_manifest(tmp_path / "m", {"plain": UNGRANTED_MODULE_WAT}, kernels)
    raw = json.loads(manifest.read_text())
    raw["modules"]["plain"]["imports"] = []
    manifest.write_text(json.dumps(raw))
    rt = Runtime(manifest, cache_dir=tmp_path / "cache")
    with pytest.raises(IntegrityError, match=r"env.vh_progress"):
        rt.run("plain.echo", b"", {})


def test_cancel_from_another_thread_stops_that_job_and_not_a_parallel_one(rt):
    started = threading.Event()
    token = CancelToken()
    outcome: dict[str, object] = {}

    def doomed():
        try:
            rt.run("test.spin_progress", cancel=token, progress=lambda d, t: started.set())
            outcome["doomed"] = "finished"
        except Exception as e:
            outcome["doomed"] = e

    thread = threading.Thread(target=doomed)
    thread.start()
    try:
        assert started.wait(WAIT_S)
        # Jobs on this thread run to completion while the other thread is inside its wasm call
        # (it can only leave it through the token): calls run in parallel, nothing waits.
        bystander = [busy(rt, 200_000 + i) for i in range(20)]
        assert thread.is_alive() and "doomed" not in outcome
    finally:
        token.cancel()
        thread.join(WAIT_S)
    assert not thread.is_alive()
    assert isinstance(outcome["doomed"], Cancelled)
    assert bystander == [busy_reference(200_000 + i) for i in range(20)]


def test_cancelled_token_stops_a_job_before_it_runs(rt):
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        rt.run("test.echo", b"x", {}, cancel=token)
    assert token.cancelled


def test_two_threads_run_kernels_at_once_with_correct_results(rt):
    barrier = threading.Barrier(2, timeout=WAIT_S)
    results: dict[int, object] = {}

    def worker(k: int):
        try:
            barrier.wait()
            got = []
            for i in range(30):
                n = 5_000 * (k + 1) + i
                got.append(busy(rt, n) == busy_reference(n))
                payload = bytes([k, i]) * (100 + i)
                got.append(rt.run("test.echo", payload, {}).output == payload)
            results[k] = got
        except Exception as e:
            results[k] = e

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert results == {0: [True] * 60, 1: [True] * 60}


def test_each_thread_has_its_own_instance_and_reuses_it(rt):
    rt.run("test.echo", b"a", {})
    mine = rt._local.instances["test"]
    rt.run("test.echo", b"b", {})
    assert rt._local.instances["test"] is mine
    other = []
    t = threading.Thread(
        target=lambda: (rt.run("test.echo", b"c", {}), other.append(rt._local.instances["test"]))
    )
    t.start()
    t.join(WAIT_S)
    assert other and other[0] is not mine


def test_progress_callbacks_arrive_in_order(rt):
    seen = []
    out = rt.run("test.progress", b"", {"n": 6}, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(i, 6) for i in range(1, 7)]
    assert int.from_bytes(out.output, "little") == 6


def test_progress_is_not_delivered_to_a_kernel_without_the_grant(rt):
    seen = []
    rt.run("test.progress_ungranted", b"", {"n": 3}, progress=lambda d, t: seen.append(d))
    assert seen == []


def test_a_failing_progress_callback_stops_the_job(rt):
    def boom(done, total):
        raise RuntimeError("ui went away")

    with pytest.raises(KernelError, match="progress callback failed") as info:
        rt.run("test.progress", b"", {"n": 5}, progress=boom)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert rt.run("test.echo", b"ok", {}).output == b"ok"


def test_a_keyboard_interrupt_in_a_progress_callback_stops_the_job_and_is_raised(rt):
    seen = []

    def interrupted(done, total):
        seen.append(done)
        raise KeyboardInterrupt

    # Before the fix ctypes swallowed it and handed wasmtime a garbage trap: the process crashed.
    with pytest.raises(KeyboardInterrupt):
        rt.run("test.progress", b"", {"n": 5}, progress=interrupted)
    assert seen == [1]
    assert rt.run("test.echo", b"ok", {}).output == b"ok"


def test_unknown_kernel(rt):
    with pytest.raises(UnknownKernel, match=r"unknown kernel 'test.nope'"):
        rt.run("test.nope", b"", {})
    with pytest.raises(UnknownKernel):
        rt.spec("nope")


@pytest.mark.parametrize(
    ("kernel", "data", "params", "message"),
    [
        ("test.params", b"", {}, "missing param 'width'"),
        ("test.params", b"", {"width": "7"}, "param 'width' must be an int"),
        ("test.params", b"", {"width": 7.5}, "must be an integer"),
        ("test.params", b"", {"width": True}, "must be an int"),
        ("test.params", b"", {"width": 101}, r"width' = 101 is out of range \[1, 100\]"),
        ("test.params", b"", {"width": 0}, "out of range"),
        ("test.params", b"", {"width": 5, "sigma": 9.0}, "sigma' = 9 is out of range"),
        ("test.params", b"", {"width": 5, "sigma": float("nan")}, "must be finite"),
        # Ints too big for a float (e.g. from JSON) are out of range, not an OverflowError.
        ("test.params", b"", {"width": 10**400}, "1329-bit integer is out of range"),
        ("test.params", b"", {"width": 5, "sigma": -(10**400)}, "is out of range"),
        ("test.params", b"", {"width": 5, "dtype": "u8"}, "must be one of f64, i32"),
        ("test.params", b"", {"width": 5, "radius": 1}, "unknown param 'radius'"),
        ("test.params", b"x", {"width": 5}, "takes no input"),
        ("test.image", bytes(15), {"width": 2, "height": 2}, "15 bytes, a 2x2 RGBA8 image is 16"),
        ("test.numeric", bytes(12), {}, "not a whole number of 8-byte f64"),
        ("test.numeric", bytes(6), {"dtype": "i32"}, "not a whole number of 4-byte i32"),
    ],
)
def test_bad_params_and_inputs_are_bad_input_with_a_clear_message(
    rt, kernel, data, params, message
):
    with pytest.raises(BadInput, match=message):
        rt.run(kernel, data, params)
    with pytest.raises(BadInput, match=message):
        rt.validate(kernel, data, params)


def test_validate_returns_normalized_params_with_defaults(rt):
    assert rt.validate("test.params", b"", {"width": 3.0}) == {
        "width": 3,
        "sigma": 1.5,
        "dtype": "f64",
    }
    assert rt.validate("test.numeric", bytes(12), {"dtype": "i32"}) == {"dtype": "i32"}


@pytest.mark.parametrize("limit", [0, -1, (4 << 30) + 1])
def test_a_memory_limit_wasm32_cannot_have_is_bad_input(manifest, tmp_path, limit):
    with pytest.raises(BadInput, match="memory_limit_bytes must be in"):
        Runtime(manifest, cache_dir=tmp_path / "cache", memory_limit_bytes=limit)


@pytest.mark.parametrize("deadline", [0, -1, float("nan"), float("inf")])
def test_a_nonsense_deadline_is_bad_input(rt, deadline):
    with pytest.raises(BadInput, match="deadline"):
        rt.run("test.echo", b"", {}, deadline_s=deadline)


def test_catalogue_and_spec(rt):
    names = [k.name for k in rt.catalogue()]
    assert names == list(TEST_KERNELS)
    spec = rt.spec("test.params")
    assert [p.name for p in spec.params] == ["width", "sigma", "dtype"]
    assert spec.param("dtype").choices == ("f64", "i32")
    assert spec.input_kind == "none"
    assert rt.spec("test.progress").grants == ("progress",)
    assert spec.to_dict()["params"][0] == {
        "name": "width",
        "type": "int",
        "min": 1,
        "max": 100,
        "default": None,
        "description": "",
    }


def test_modules_load_lazily(manifest, tmp_path):
    rt = Runtime(manifest, cache_dir=tmp_path / "cache")
    assert rt._modules == {}
    assert not (tmp_path / "cache").exists()
    rt.run("test.echo", b"", {})
    assert set(rt._modules) == {"test"}


def test_a_big_job_does_not_pin_its_memory(manifest, tmp_path):
    rt = Runtime(
        manifest,
        cache_dir=tmp_path / "cache",
        memory_limit_bytes=256 << 20,
        retain_memory_bytes=16 << 20,
    )
    rt.run("test.echo", b"small", {})
    small = rt._local.instances["test"]
    assert rt.run("test.echo", bytes(4 << 20), {}).output == bytes(4 << 20)
    assert rt._local.instances["test"] is small  # under the retain size: kept warm
    big = bytes(10 << 20)
    assert rt.run("test.echo", big, {}).output == big
    assert "test" not in rt._local.instances  # dropped: its memory grew past the retain size
    assert rt.run("test.echo", b"again", {}).output == b"again"
    assert rt._local.instances["test"] is not small


def test_a_dropped_instance_is_freed_at_once_without_the_cycle_collector(rt):
    import gc
    import weakref

    rt.run("test.echo", b"x", {})
    ref = weakref.ref(rt._local.instances["test"])
    gc.disable()
    try:
        with pytest.raises(KernelError):
            rt.run("test.trap")
        assert ref() is None
    finally:
        gc.enable()


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_deadlines_still_work_in_a_forked_child(rt):
    import os

    rt.run("test.echo", b"warm", {})  # the parent's ticker thread exists now
    pid = os.fork()
    if pid == 0:  # child: exit 0 only if the deadline stopped the loop
        import signal

        # Should the deadline not work, the kernel loops forever: the alarm ends the child.
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(WAIT_S)
        code = 1
        try:
            rt.run("test.spin", deadline_s=0.05)
        except DeadlineExceeded:
            code = 0
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_params_must_be_a_mapping(rt):
    with pytest.raises(BadInput, match="params must be a mapping"):
        rt.run("test.params", b"", [("width", 3)])


def test_a_kernel_cannot_be_started_from_a_progress_callback_on_the_same_thread(rt):
    errors = []

    def nested(done, total):
        try:
            rt.run("test.echo", b"inner", {})
        except KernelError as e:
            errors.append(e)

    rt.run("test.progress", b"", {"n": 2}, progress=nested)
    assert len(errors) == 2 and "from a progress callback" in str(errors[0])
    assert rt.run("test.echo", b"outer", {}).output == b"outer"


@pytest.fixture
def liar(tmp_path):
    from tests.support.wat import LIAR_KERNELS, LIAR_MODULE_WAT

    manifest = write_manifest(tmp_path / "liar", {"liar": LIAR_MODULE_WAT}, LIAR_KERNELS)
    return Runtime(manifest, cache_dir=tmp_path / "cache")


def test_host_never_writes_outside_guest_memory_whatever_vh_begin_returns(liar):
    with pytest.raises(KernelError, match="vh_begin returned a block outside its memory"):
        liar.run("liar.badout", bytes(64), {})


def test_host_never_reads_an_output_outside_guest_memory(liar):
    with pytest.raises(KernelError, match="output outside its memory"):
        liar.run("liar.badout", b"", {})


def test_an_unterminated_error_message_is_read_only_up_to_the_end_of_memory(liar):
    with pytest.raises(BadInput, match=r"bad params: AAAAAAAA$"):
        liar.run("liar.unterminated", b"", {})


def test_a_start_function_that_never_returns_is_stopped_by_the_deadline(tmp_path):
    from tests.support.wat import ENDLESS_START_WAT

    kernels = {"stuck.echo": {**TEST_KERNELS["test.echo"], "module": "stuck"}}
    manifest = write_manifest(tmp_path / "m", {"stuck": ENDLESS_START_WAT}, kernels)
    rt = Runtime(manifest, cache_dir=tmp_path / "cache", default_deadline_s=0.05)
    with pytest.raises(DeadlineExceeded, match=r"module stuck \(start\)"):
        rt.run("stuck.echo", b"", {})


def test_a_start_function_that_traps_is_a_kernel_error(tmp_path):
    from tests.support.wat import TRAPPING_START_WAT

    kernels = {"boom.echo": {**TEST_KERNELS["test.echo"], "module": "boom"}}
    manifest = write_manifest(tmp_path / "m", {"boom": TRAPPING_START_WAT}, kernels)
    rt = Runtime(manifest, cache_dir=tmp_path / "cache")
    with pytest.raises(KernelError, match=r"module boom: cannot instantiate: .*unreachable"):
        rt.run("boom.echo", b"", {})


def test_progress_reports_reach_python_only_when_the_job_has_a_callback(
    manifest, tmp_path, monkeypatch
):
    from veraltheim.wasm import instance

    crossings = []
    original = instance._JobSlot.progress

    def counting(self, *args):
        crossings.append(1)
        return original(self, *args)

    monkeypatch.setattr(instance._JobSlot, "progress", counting)
    rt = Runtime(manifest, cache_dir=tmp_path / "cache")
    rt.run("test.progress", b"", {"n": 50})
    assert crossings == []
    seen = []
    rt.run("test.progress", b"", {"n": 50}, progress=lambda d, t: seen.append(d))
    assert len(crossings) == 50 and seen == list(range(1, 51))
    rt.run("test.progress", b"", {"n": 50})
    assert len(crossings) == 50


def test_a_progress_callback_can_cancel_its_own_job(rt):
    token = CancelToken()
    seen = []

    def stop_at_three(done, total):
        seen.append(done)
        if done == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        rt.run("test.progress", b"", {"n": 1000}, cancel=token, progress=stop_at_three)
    assert seen == [1, 2, 3]  # stopped at the report, not a tick later


def test_exhausting_the_wasm_stack_is_a_kernel_error_not_a_crash(rt):
    with pytest.raises(KernelError, match="stack"):
        rt.run("test.recurse")
    assert rt.run("test.echo", b"alive", {}).output == b"alive"


def test_none_is_an_empty_input(rt):
    out = rt.run("test.params", None, {"width": 2}).output
    assert np.frombuffer(out, "<f8").tolist() == [2.0, 1.5, 0.0]
    assert rt.validate("test.params", None, {"width": 2})["width"] == 2
    with pytest.raises(BadInput, match="input must be bytes-like"):
        rt.run("test.echo", "text", {})


def test_warm_loads_and_instantiates_every_module_for_the_calling_thread(tmp_path):
    from veraltheim.wasm import Runtime

    rt = Runtime(cache_dir=tmp_path)
    rt.warm()
    assert set(rt._local.instances) == set(rt.manifest.modules)
    assert list(tmp_path.rglob("*.cwasm")), "compiled code went to the disk cache"
