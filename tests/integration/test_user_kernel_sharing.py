"""Users' kernels shared through a real service (subprocess): upload over the compute channel
with the `kernels` grant, refused without it, the same install checks on the service, run
remotely from another client, fetched and hash-checked, removed; a misbehaving kernel is stopped
while other users' jobs keep running."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from veraltheim.client.compute.errors import RemoteError
from veraltheim.client.compute.remote import RemoteCompute
from veraltheim.protocol.constants import COMPUTE_TOPIC
from veraltheim.protocol.envelope import pack_envelope
from veraltheim.protocol.reasons import ComputeEvent

from tests.support.user_kernels import MODES, STARTERS, build_starter, module_wat, package

pytestmark = pytest.mark.slow
COMPUTE_ENV = {"VERALTHEIM_COMPUTE_WORKERS": "2", "VERALTHEIM_COMPUTE_JOB_DEADLINE_S": "2"}
FAST = (0.05, 0.2)


def kernel_cli(*args, env) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "veraltheim.client.compute.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_starter_kernels_upload_run_remotely_fetch_and_refusals(service_factory, tmp_path):
    svc = service_factory(env=COMPUTE_ENV)
    admin = svc.token("alice", 3600, "--grant", "kernels")
    other = svc.token("bob")
    env = {**os.environ, "VERALTHEIM_USER_KERNELS_DIR": str(tmp_path / "bob-kernels")}
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (30, 40, 4), dtype=np.uint8)
    pixels[..., 3] = 255
    Image.fromarray(pixels, "RGBA").save(tmp_path / "in.png")
    for toolchain in STARTERS:
        build_starter(tmp_path / "projects", toolchain)
        project = tmp_path / "projects" / toolchain
        name = f"user.invert_{toolchain}"
        files = (project / "kernel.wasm", "--spec", project / "kernel.toml")
        common = ("--service", svc.ws_url, "--token")

        refused = kernel_cli("add", *files, *common, other, env=env)
        assert refused.returncode == 1
        assert refused.stderr == (
            "veraltheim-kernel: error: service: installing kernels needs a token with the "
            "'kernels' grant (veraltheim-service token issue --user bob --grant kernels) "
            "(forbidden)\n"
        )
        uploaded = kernel_cli("add", *files, *common, admin, env=env)
        assert uploaded.returncode == 0, uploaded.stderr
        assert uploaded.stdout.startswith(f"uploaded {name} (sha256 ")
        assert (svc.data_dir / "kernels" / "manifest.json").is_file()

        listed = kernel_cli("list", "--user", *common, other, env=env)
        line = next(ln for ln in listed.stdout.splitlines() if ln.startswith(name))
        assert " by alice  at " in line

        # Another client (bob, no grant) runs it there: it does not exist on bob's machine.
        out = tmp_path / f"{toolchain}.png"
        ran = kernel_cli(
            "run", name, "-i", tmp_path / "in.png", "-o", out, "--where", "remote",
            *common, other, env=env,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        assert "ran remote (forced remote)" in ran.stderr
        result = np.asarray(Image.open(out).convert("RGBA"))
        assert np.array_equal(result[..., :3], 255 - pixels[..., :3])

        # ... then fetches it (hash-checked, the same checks) and runs it at home.
        fetched = kernel_cli("fetch", name, *common, other, env=env)
        assert fetched.returncode == 0, fetched.stderr
        local = kernel_cli("run", name, "-i", tmp_path / "in.png", "-o", out, env=env)
        assert local.returncode == 0, local.stderr

        assert kernel_cli("remove", name, *common, other, env=env).returncode == 1
        removed = kernel_cli("remove", name, *common, admin, env=env)
        assert removed.returncode == 0, removed.stderr
        gone = kernel_cli(
            "run", name, "-i", tmp_path / "in.png", "-o", out, "--where", "remote",
            *common, other, env=env,
        )  # fmt: skip
        assert gone.returncode == 1
        assert "does not exist on the service" in gone.stderr


async def remote(sockets, url: str, token: str) -> RemoteCompute:
    sock = sockets(url, token=token)
    await sock.connect()
    rc = RemoteCompute(sock, COMPUTE_TOPIC)
    await rc.wait_joined(10)
    return rc


async def test_bad_uploads_are_refused_and_misbehaving_kernels_stopped(service_factory, sockets):
    svc = service_factory(env=COMPUTE_ENV)
    admin = await remote(sockets, svc.ws_url, svc.token("alice", 3600, "--grant", "kernels"))
    user = await remote(sockets, svc.ws_url, svc.token("carol"))
    good = package()

    async def refusal(wasm, wire) -> RemoteError:
        with pytest.raises(RemoteError) as info:
            await admin.upload_kernel(wasm, wire)
        return info.value

    err = await refusal(b"not wasm at all", good.wire_spec())
    assert (err.reason, err.response["check"]) == ("refused", "not wasm")
    wrong = module_wat('(func (export "u_main") (param i32) (result i32) (i32.const 0))')
    err = await refusal(wrong, good.wire_spec())
    assert err.response["check"] == "exports" and "(i32, i32, i32, i32, i32) -> i32" in str(err)
    evil = module_wat(imports='(import "env" "vh_progress" (func (param i32 i32)))')
    assert (await refusal(evil, good.wire_spec())).response["check"] == "imports"
    huge = module_wat(abi=module_abi_with_memory(65536))
    err = await refusal(huge, good.wire_spec())
    assert err.response["check"] == "memory" and "4 GiB" in str(err)
    err = await refusal(good.wasm, {**good.wire_spec(), "name": "hash.sha256"})
    assert err.response["check"] == "name"
    # An upload over the bound is refused before anything is parsed.
    reply = await admin.channel.push(
        ComputeEvent.KERNEL_ADD, pack_envelope({"spec": {}}, bytes(11 << 20)), timeout=30
    )
    assert reply.response["reason"] == "bad_request" and "is over" in reply.response["message"]

    info = await admin.upload_kernel(good.wasm, good.wire_spec())
    assert info["installed_by"] == "alice" and info["sha256"] == good.sha256
    assert "user.echo" not in user.catalogue  # joined before the upload
    await user.refresh()
    assert user.catalogue["user.echo"]["installed"]["installed_by"] == "alice"
    assert user.catalogue["user.echo"]["sha256"] == good.sha256

    # carol's good job runs while alice's copy loops forever; the loop is stopped by the
    # deadline, the trap by wasmtime, each with one line, and the service goes on.
    spin = asyncio.ensure_future(
        admin.run("user.echo", b"", {"mode": MODES["spin"]}, timeout_s=30, deadline_s=1.0)
    )
    ok = await user.run("user.echo", b"fine", {"mode": 0}, timeout_s=30)
    assert ok.output == b"fine"
    with pytest.raises(RemoteError) as stopped:
        await spin
    assert stopped.value.reason == "deadline"
    with pytest.raises(RemoteError) as trapped:
        await user.run("user.echo", b"", {"mode": MODES["trap"]}, timeout_s=30)
    assert trapped.value.reason == "kernel_error" and "kernel trapped" in str(trapped.value)
    with pytest.raises(RemoteError) as outside:
        await user.run("user.echo", b"", {"mode": MODES["output_outside"]}, timeout_s=30)
    assert "output outside its memory" in str(outside.value)
    again = await user.run("user.echo", b"still here", {"mode": 0}, timeout_s=30)
    assert again.output == b"still here"
    digest = await user.run("hash.sha256", b"abc", {}, timeout_s=30)
    assert digest.output.hex().startswith("ba7816bf")


def module_abi_with_memory(pages: int) -> str:
    from tests.support.wat import ABI_WAT

    return ABI_WAT.replace('(memory (export "memory") 1)', f'(memory (export "memory") {pages})')
