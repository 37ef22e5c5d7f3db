"""The hostile-client suite: one real service (auth on, one compute worker, a short job
deadline) per module, watched by tests/support/watch.py while the cases attack it."""

from __future__ import annotations

import pytest

from tests.support.service import running_service
from tests.support.watch import Watch

HOSTILE_ENV = {
    "VERALTHEIM_COMPUTE_WORKERS": "1",
    "VERALTHEIM_COMPUTE_JOB_DEADLINE_S": "2",
    "VERALTHEIM_LOG_LEVEL": "WARNING",
}


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("hostile"), env=HOSTILE_ENV) as service:
        yield service


@pytest.fixture(scope="module")
def watch(svc):
    assert svc.proc is not None
    w = Watch(svc.ws_url, svc.proc.pid).start()
    yield w
    w.stop()
