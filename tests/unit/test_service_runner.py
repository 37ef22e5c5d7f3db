"""The service's process set-up: its event loop and its descriptor limit."""

from __future__ import annotations

import asyncio
import resource
import subprocess
import sys

import pytest
from veraltheim.service.runner import new_event_loop

RAISE_AND_PRINT = """
import resource
from veraltheim.service.runner import raise_fd_limit
raise_fd_limit()
print(*resource.getrlimit(resource.RLIMIT_NOFILE))
"""


def test_the_service_loop_is_uvloop_where_installed():
    uvloop = pytest.importorskip("uvloop")
    loop = new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
        assert loop.run_until_complete(asyncio.sleep(0, "ran")) == "ran"
    finally:
        loop.close()


def test_the_service_takes_the_hard_descriptor_limit():
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = min(hard, 256)
    if soft == hard:
        pytest.skip("hard limit too low to lower the soft one")
    out = subprocess.run(
        [sys.executable, "-c", RAISE_AND_PRINT],
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.split() == [str(hard), str(hard)]
