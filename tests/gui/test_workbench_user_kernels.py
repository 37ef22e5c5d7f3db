"""Users' kernels in the app: installed while the window is open, each starter kernel (C with
clang, C with zig cc, Rust) appears in the Workbench without a restart, runs like a built-in one
(progress, result, the Inspector's decisions) and disappears when removed."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from PIL import Image
from veraltheim.client.ui.waiting import wait_signal, wait_until
from veraltheim.wasm.user_kernels import UserKernelStore, install

from tests.gui.conftest import click, open_input
from tests.support.user_kernels import STARTERS, build_starter

pytestmark = pytest.mark.slow


def test_installed_starter_kernels_appear_run_and_go(make_shell, run, tmp_path):
    packages = [build_starter(tmp_path / "projects", t) for t in STARTERS]
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (40, 50, 4), dtype=np.uint8)
    pixels[..., 3] = 255
    png = tmp_path / "in.png"
    Image.fromarray(pixels, "RGBA").save(png)
    shell = make_shell()
    wb = shell.workbench
    store = UserKernelStore(shell.runtime.user_manifest_path.parent)

    def names() -> list[str]:
        return [r["name"] for r in wb.kernels.rows]

    async def scenario():
        await shell.set_link("", "")
        assert not [n for n in names() if n.startswith("user.")]
        for pkg in packages:  # as `veraltheim-kernel add` in another process would
            await asyncio.to_thread(install, pkg, store, installed_by="tester")
        wanted = {p.name for p in packages}
        await wait_until(
            lambda: wanted <= set(names()), [wb.kernels.modelReset], 20, "the new kernels"
        )
        for pkg in packages:
            wb.selectKernel(pkg.name)
            assert wb.kernel == pkg.name
            if wb.inputSummary == "":
                assert await open_input(wb, png) == "ok"
            wb.setWhere("local")
            finished = asyncio.ensure_future(wait_signal(wb.finished, 60))
            await click(shell, "runButton")
            (status,) = await finished
            assert status == "ok", shell.notices.text
            result = np.frombuffer(wb._result.raw, np.uint8).reshape(pixels.shape)
            assert np.array_equal(result[..., :3], 255 - pixels[..., :3])
            assert wb.resultKind == "image"
        decided = [r["kernel"] for r in shell.inspector.decisions.rows]
        assert set(decided) == wanted
        await asyncio.to_thread(store.remove, packages[0].name)
        await wait_until(
            lambda: packages[0].name not in names(), [wb.kernels.modelReset], 20, "the removal"
        )

    run(scenario())
    assert packages[0].name not in {s.name for s in shell.runtime.catalogue()}
