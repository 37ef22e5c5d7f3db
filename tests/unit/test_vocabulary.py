"""One vocabulary: the words both ends agree on (reasons, compute events), the routes, the views
and the run record are each defined once and used by name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pycrdt import Doc
from veraltheim import wasm
from veraltheim.client.compute.routes import SIDES, Route
from veraltheim.client.state.run_history import RunHistory
from veraltheim.client.state.run_record import (
    RunRecord,
    RunStatus,
    RunSummary,
    estimate_key,
)
from veraltheim.protocol.reasons import Reason
from veraltheim.service.compute.errors import ComputeError, reason_for

ROOT = Path(__file__).resolve().parents[2]


def test_a_run_record_round_trips_through_the_shared_history():
    record = RunRecord(
        kernel="image.blur",
        user="ann",
        where=Route.REMOTE,
        size=12,
        timings={"total_ms": 3.5, estimate_key(Route.LOCAL): 4.0},
        summary=RunSummary(reason="remote estimated faster", params={"radius": 2}, at=1.0),
    )
    history = RunHistory(Doc())
    assert history.append(record) == record.id
    (back,) = history.records()
    assert back == record
    assert back.total_ms == 3.5 and back.estimate_ms(Route.LOCAL) == 4.0
    assert back.estimate_ms(Route.REMOTE) is None
    assert history.items()[0]["where"] == "remote"  # plain JSON for other clients


def test_a_run_written_by_another_client_is_read_leniently():
    record = RunRecord.from_entry(
        {
            "kernel": 3,
            "status": "weird",
            "size": 2.0,
            "timings": {"total_ms": "slow", "run_ms": 1, "x": float("nan")},
            "summary": "ok",
        }
    )
    assert (record.kernel, record.status, record.size) == ("", RunStatus.DONE, 2)
    assert record.timings == {"run_ms": 1.0} and record.summary == RunSummary()


def test_routes_and_sides():
    assert [r.label for r in Route] == ["Auto", "Local", "Remote"]
    assert set(SIDES) == set(Route) - {Route.AUTO}


@pytest.mark.parametrize(
    "cls",
    [
        wasm.KernelError,
        wasm.UnknownKernel,
        wasm.BadInput,
        wasm.MemoryLimitExceeded,
        wasm.DeadlineExceeded,
        wasm.Cancelled,
        wasm.IntegrityError,
    ],
)
def test_each_runtime_error_is_sent_with_its_own_reason(cls):
    assert isinstance(cls.code, Reason)
    assert reason_for(cls("x")) is cls.code


def test_other_exceptions_are_internal_and_compute_errors_keep_theirs():
    assert reason_for(RuntimeError("x")) is Reason.INTERNAL
    assert reason_for(ComputeError(Reason.BUSY, "full")) is Reason.BUSY


def _reason_literals(path: Path, root: Path = ROOT) -> list[str]:
    """`{"reason": "some text"}` and `x == "some text"` where x reads a reason."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                is_reason = isinstance(key, ast.Constant) and key.value == "reason"
                if is_reason and isinstance(value, ast.Constant):
                    found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_no_error_reason_is_spelled_out_twice():
    """Every fixed reason on the wire comes from protocol.reasons.Reason."""
    found = [
        hit
        for package in ("protocol", "service", "client", "wasm")
        for path in sorted((ROOT / package).rglob("*.py"))
        for hit in _reason_literals(path)
    ]
    assert found == []


def test_the_reason_scan_finds_a_literal(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('ok = {"reason": Reason.BUSY}\nreply = {"reason": "busy"}\n')
    assert _reason_literals(bad, tmp_path) == ["bad.py:2"]
