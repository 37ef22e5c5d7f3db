"""The app's Qt-free helpers: note edits, caret mapping, input files, outputs, settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from veraltheim.client.ui.inputs import InputError, load_input
from veraltheim.client.ui.notes import map_position, text_edit
from veraltheim.client.ui.settings import AppSettings, load_settings, save_settings


@pytest.mark.parametrize(
    ("old", "new", "edit"),
    [
        ("hello", "hello!", (5, 0, "!")),
        ("hello", "help", (3, 2, "p")),
        ("abc", "xabc", (0, 0, "x")),
        ("aaa", "aa", (2, 1, "")),
        ("", "new", (0, 0, "new")),
        ("same", "same", (4, 0, "")),
    ],
)
def test_text_edit_is_the_smallest_single_replacement(old, new, edit):
    start, deleted, inserted = text_edit(old, new)
    assert (start, deleted, inserted) == edit
    assert old[:start] + inserted + old[start + deleted :] == new


def test_a_remote_edit_moves_the_caret_instead_of_jumping_it():
    # caret after "hello |world"
    assert map_position(6, [{"insert": ">> "}]) == 9  # typed before it
    assert map_position(6, [{"retain": 8}, {"insert": "XX"}]) == 6  # typed after it
    assert map_position(6, [{"delete": 2}]) == 4  # deleted before it
    assert map_position(6, [{"retain": 4}, {"delete": 5}]) == 4  # deleted across it
    assert map_position(6, [{"retain": 2}, {"delete": 1}, {"insert": "abc"}]) == 8
    assert map_position(6, [{"retain": 6}, {"insert": "at the caret"}]) == 6


def test_numbers_from_csv_text_and_raw_binary(tmp_path):
    csv = tmp_path / "v.csv"
    csv.write_text("x,y\n1,2\n3.5;4\n")
    loaded = load_input(csv, "f64", max_bytes=1 << 20)
    assert np.frombuffer(loaded.data, "<f8").tolist() == [1, 2, 3.5, 4]
    raw = tmp_path / "v.i32"
    raw.write_bytes(np.arange(5, dtype="<i4").tobytes())
    assert load_input(raw, "numeric", dtype="i32", max_bytes=1 << 20).summary.endswith(
        "5 i32 values"
    )
    raw.write_bytes(b"\x01\x02\x03\xff\xfe")  # 5 bytes: not whole i32 values, not text
    with pytest.raises(InputError, match="not a whole number of i32 values"):
        load_input(raw, "numeric", dtype="i32", max_bytes=1 << 20)


def test_a_file_over_the_limit_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * 4096)
    with pytest.raises(
        InputError, match=r"big.bin is 4.0 KiB, over the 1.0 KiB input limit\. Pick a smaller file"
    ):
        load_input(big, "bytes", max_bytes=1024)


def test_settings_round_trip_and_unknown_or_mistyped_keys_are_ignored(tmp_path):
    path = tmp_path / "settings.json"
    save_settings(AppSettings(service_url="wss://h:1/socket/websocket", route="remote"), path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"  # it holds the token
    raw = json.loads(path.read_text())
    raw["max_input_mib"] = "lots"
    raw["unknown"] = 1
    raw["route"] = "sideways"
    path.write_text(json.dumps(raw))
    settings, problem = load_settings(path)
    assert problem is None
    assert settings.service_url == "wss://h:1/socket/websocket"
    assert settings.max_input_mib == AppSettings().max_input_mib
    assert settings.route == "auto"


def test_the_runs_view_follows_appends_merges_and_updates(qapp):
    """Appends are read incrementally; a merge before shown runs or an update reads all."""
    from pycrdt import Doc
    from veraltheim.client.state.run_history import RunHistory
    from veraltheim.client.ui.notices import Notices
    from veraltheim.client.ui.runs import Runs

    def run(kernel: str) -> dict:
        return {"kernel": kernel, "status": "done", "user": "u", "where": "local", "size": 1}

    doc = Doc()
    history = RunHistory(doc)
    history.append(run("a"))
    runs = Runs(Notices())
    runs.attach(history, "live")
    assert [r.kernel for r in runs.runs] == ["a"]

    history.append(run("b"))
    runs.refresh()  # (the view schedules this itself after the transaction)
    assert [r.kernel for r in runs.runs] == ["a", "b"]

    # another client's concurrent append merges in before "b"
    other = Doc()
    other_history = RunHistory(other)
    other.apply_update(doc.get_update())
    from pycrdt import Array, Map

    other.get("runs", type=Array).insert(1, Map(run("c")))
    doc.apply_update(other.get_update(doc.get_state()))
    runs.refresh()
    assert [r.kernel for r in runs.runs] == [r["kernel"] for r in history.items()]
    assert len(runs.runs) == 3 and runs.model.count == 3

    run_id = runs.runs[0].id
    history.update(run_id, status="failed")
    runs.refresh()
    assert runs.runs[0].status == "failed"
    assert "(failed)" in runs.model.rows[0]["where"]
    assert len(other_history) == 3


def test_callbacks_due_as_a_run_ends_still_see_a_running_loop(qapp):
    """qasync's run_until_complete runs one more pass of Qt's events after the loop stopped:
    a task stepped there finds no running loop (a reconnecting link died that way)."""
    import asyncio

    import qasync
    from veraltheim.client.ui.qtloop import run_until_done

    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    seen: list[object] = []

    async def ends_with_a_callback_due() -> int:
        me = asyncio.current_task()
        assert me is not None
        # due just after this coroutine ends, i.e. around the time the loop stops
        me.add_done_callback(
            lambda _: loop.call_soon(lambda: seen.append(asyncio._get_running_loop()))
        )
        return 7

    try:
        assert run_until_done(loop, ends_with_a_callback_due()) == 7
        assert run_until_done(loop, asyncio.sleep(0, 8)) == 8
        assert seen == [loop]  # run in the next run, on a running loop (never with none)
    finally:
        loop.close()
        asyncio.set_event_loop(None)


def test_qt_calling_python_does_not_drop_references_to_none(qapp):
    """PySide6 6.12.0 on CPython 3.11 loses a reference to None on each call from Qt into
    Python (a slot, a timer, every qasync callback): after ~30k the process aborts with
    "deallocating None". pyproject pins PySide6 below 6.12 for this."""
    import sys

    from PySide6.QtCore import QTimer

    calls = []
    before = sys.getrefcount(None)
    for _ in range(2000):
        QTimer.singleShot(0, lambda: calls.append(1))
    while len(calls) < 2000:
        qapp.processEvents()
    assert before - sys.getrefcount(None) < 500
