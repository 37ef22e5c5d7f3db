"""Users' kernels: every install check refuses with one line naming it, the store pins by sha256,
the Runtime picks installed kernels up, and a kernel that misbehaves at run time is stopped with
one clear message while the runtime keeps working."""

from __future__ import annotations

import json

import pytest
from veraltheim.client.compute.cost_model import DEFAULT_NS_PER_BYTE, LOCAL_OVERHEAD_MS
from veraltheim.client.compute.dispatcher import Dispatcher
from veraltheim.wasm import DeadlineExceeded, IntegrityError, KernelError, Runtime, UnknownKernel
from veraltheim.wasm.user_kernels import (
    MAX_MODULE_BYTES,
    Example,
    InstallRefused,
    UserKernelStore,
    check_kernel,
    install,
    package_from_wire,
)

from tests.support.user_kernels import KERNEL_WAT, MODES, module_wat, package
from tests.support.wat import ABI_WAT

BUILTIN = frozenset({"image.blur"})


def refused(pkg, **kw) -> InstallRefused:
    with pytest.raises(InstallRefused) as info:
        check_kernel(pkg, reserved_names=BUILTIN, **kw)
    message = str(info.value)
    assert "\n" not in message
    return info.value


def test_a_good_kernel_passes_every_check():
    checked = check_kernel(package(), reserved_names=BUILTIN)
    assert checked.spec.name == "user.echo"
    assert checked.imports == []
    assert "u_main" in checked.exports


@pytest.mark.parametrize(
    ("make", "check", "words"),
    [
        (lambda: package(wasm=b"MZ\x90\x00 not a module"), "not wasm", "not a WebAssembly module"),
        (lambda: package(wasm=b"\0asm\x01\0\0\0\xff\xff"), "not wasm", "not valid WebAssembly"),
        (lambda: package(wasm=b"\0asm" + bytes(MAX_MODULE_BYTES)), "size", "over"),
        (
            lambda: package(
                wasm=module_wat(
                    '(func (export "u_main") (param i32 i32) (result i32) (i32.const 0))'
                )
            ),
            "exports",
            "needs an export u_main of type (i32, i32, i32, i32, i32) -> i32",
        ),
        (
            lambda: package(wasm=module_wat(KERNEL_WAT.replace('"u_main"', '"other"'))),
            "exports",
            "needs an export u_main",
        ),
        (
            lambda: package(
                wasm=module_wat(
                    imports='(import "wasi_snapshot_preview1" "fd_write" '
                    "(func (param i32 i32 i32 i32) (result i32)))"
                )
            ),
            "imports",
            "imports wasi_snapshot_preview1.fd_write, which the manifest does not grant "
            "(grants: none)",
        ),
        (
            lambda: package(
                wasm=module_wat(imports='(import "env" "vh_progress" (func (param i32 i32)))')
            ),
            "imports",
            "imports env.vh_progress, which the manifest does not grant",
        ),
        (
            lambda: package(
                wasm=module_wat(
                    abi=ABI_WAT.replace(
                        '(memory (export "memory") 1)', '(memory (export "memory") 65536)'
                    )
                )
            ),
            "memory",
            "declares a memory minimum of 4 GiB, over the memory limit of 1 GiB",
        ),
        (lambda: package(examples=[]), "examples", "at least one is needed"),
        (
            lambda: package(examples=[Example(b"hello", {"mode": 0}, b"HELLO")]),
            "examples",
            "example 1: output differs from the expected one at byte 0",
        ),
        (
            lambda: package(examples=[Example(b"x", {"mode": MODES["trap"]}, b"x")]),
            "examples",
            "example 1: user.echo: kernel trapped: wasm trap: wasm `unreachable`",
        ),
        (
            lambda: package(examples=[Example(b"x", {"mode": MODES["write_outside"]}, b"x")]),
            "examples",
            "memory fault at wasm address 0xfffffff0",
        ),
        (
            lambda: package(examples=[Example(b"x", {"mode": MODES["output_outside"]}, b"x")]),
            "examples",
            "kernel returned an output outside its memory",
        ),
        (lambda: package(name="Bad Name"), "spec", "name must look like 'user.invert'"),
        (lambda: package(name="image.blur"), "name", "is a built-in kernel's name"),
        (lambda: package(export="vh_alloc"), "spec", "is an ABI name"),
        (lambda: package(grants=["files"]), "spec", "unknown grant 'files'"),
        (lambda: package(tiles={"axis": "cols"}), "spec", "tiles must be"),
        (lambda: package(tiles={"axis": "rows", "halo": "nothere"}), "spec", "or an int param"),
        (
            lambda: package(
                tiles={"axis": "rows", "halo": "kind"},
                params=[{"name": "kind", "type": "enum", "choices": ["a", "b"], "default": "a"}],
            ),
            "spec",
            "or an int param",
        ),
        (lambda: package(colour="blue"), "spec", "unknown field 'colour'"),
    ],
)
def test_each_bad_module_is_refused_naming_its_check(make, check, words):
    err = refused(make())
    assert err.check == check
    assert str(err).startswith(f"refused ({check}): ")
    assert words in str(err)


def test_a_kernel_that_loops_forever_in_an_example_is_refused_at_its_deadline():
    pkg = package(examples=[Example(b"", {"mode": MODES["spin"]}, b"")])
    err = refused(pkg, example_deadline_s=0.3)
    assert err.check == "examples"
    assert "deadline of 0.3 s exceeded" in str(err)


def test_store_pins_by_sha256_and_the_runtime_sees_installs_and_removals(tmp_path):
    store = UserKernelStore(tmp_path / "kernels")
    rt = Runtime(user_kernels=store.root)
    assert "user.echo" not in rt.user_kernel_names
    info = install(package(), store, installed_by="alice", reserved_names=BUILTIN)
    assert (info.name, info.installed_by) == ("user.echo", "alice")
    assert [k.name for k in store.list()] == ["user.echo"]
    assert rt.reload_user_kernels() is True
    assert rt.reload_user_kernels() is False  # unchanged: one stat, nothing re-read
    assert rt.run("user.echo", b"abc").output == b"abc"
    assert "user.echo" in {s.name for s in rt.catalogue()}
    # The stored package round-trips: what an upload or a fetch sends.
    again = store.package("user.echo")
    assert again.sha256 == info.sha256
    assert package_from_wire(again.wasm, json.loads(json.dumps(again.wire_spec()))) == again
    store.remove("user.echo")
    assert rt.reload_user_kernels() is True
    assert "user.echo" not in {s.name for s in rt.catalogue()}
    assert store.list() == []
    with pytest.raises(KernelError, match=r"no installed kernel .user\.echo."):
        store.remove("user.echo")


def test_a_module_changed_after_install_is_refused_by_its_pinned_hash(tmp_path):
    store = UserKernelStore(tmp_path)
    info = install(package(), store, installed_by="alice")
    wasm_file = tmp_path / "modules" / f"{info.sha256}.wasm"
    wasm_file.write_bytes(
        module_wat(KERNEL_WAT.replace("(i32.const 0))\n", "(i32.const 0))\n", 1)) + b"\0"
    )
    rt = Runtime(user_kernels=tmp_path)
    with pytest.raises(IntegrityError, match=r"the manifest says .*refusing to load it"):
        rt.run("user.echo", b"abc")


def test_a_broken_user_manifest_leaves_the_builtin_kernels_working(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    rt = Runtime(user_kernels=tmp_path)
    assert rt.user_kernel_names == frozenset()
    assert rt.run("hash.sha256", b"abc").output.hex().startswith("ba7816bf")


@pytest.mark.parametrize("mode", ["spin", "trap", "write_outside", "output_outside"])
def test_misbehaving_at_run_time_is_stopped_with_one_message_and_the_runtime_goes_on(
    tmp_path, mode
):
    store = UserKernelStore(tmp_path)
    install(package(), store, installed_by="alice")
    rt = Runtime(user_kernels=tmp_path)
    with pytest.raises(KernelError) as info:
        rt.run("user.echo", b"abc", {"mode": MODES[mode]}, deadline_s=0.3)
    message = str(info.value)
    assert "\n" not in message and message.startswith("user.echo: ")
    expected = {
        "spin": (DeadlineExceeded, "deadline of 0.3 s exceeded"),
        "trap": (KernelError, "kernel trapped"),
        "write_outside": (KernelError, "memory fault at wasm address 0xfffffff0"),
        "output_outside": (KernelError, "kernel returned an output outside its memory"),
    }[mode]
    assert isinstance(info.value, expected[0])
    assert expected[1] in message
    # The same thread runs the kernel (a fresh instance) and a built-in one afterwards.
    assert rt.run("user.echo", b"again").output == b"again"
    assert len(rt.run("hash.sha256", b"abc").output) == 32


async def test_the_dispatcher_learns_a_new_kernel_from_the_prior_then_measurements(tmp_path):
    store = UserKernelStore(tmp_path)
    rt = Runtime(user_kernels=tmp_path)
    dispatcher = Dispatcher(rt)
    assert "user.echo" not in dispatcher.model.kernels
    install(package(), store, installed_by="alice")
    assert rt.reload_user_kernels()
    dispatcher.sync_local_kernels()
    costs = dispatcher.model.kernels["user.echo"]
    # No cost in its spec: the model's prior, per byte.
    assert (costs.unit, costs.local_ns, costs.local, costs.local_runs) == (
        "byte",
        DEFAULT_NS_PER_BYTE,
        True,
        0,
    )
    data = bytes(1 << 20)
    first = dispatcher.model.estimate("user.echo", len(data), {"mode": 0}).local_ms
    assert first == pytest.approx(LOCAL_OVERHEAD_MS + DEFAULT_NS_PER_BYTE * len(data) / 1e6)
    for _ in range(3):
        output, decision = await dispatcher.run("user.echo", data, {"mode": 0})
        assert output == data and decision.where == "local"
    assert costs.local_runs == 3
    assert costs.local_ns != DEFAULT_NS_PER_BYTE  # measured now
    later = dispatcher.model.estimate("user.echo", len(data), {"mode": 0}).local_ms
    assert later == pytest.approx(LOCAL_OVERHEAD_MS + costs.local_ns * len(data) / 1e6)
    store.remove("user.echo")
    assert rt.reload_user_kernels()
    dispatcher.sync_local_kernels()
    assert "user.echo" not in dispatcher.model.kernels
    with pytest.raises(UnknownKernel):
        await dispatcher.run("user.echo", data)
