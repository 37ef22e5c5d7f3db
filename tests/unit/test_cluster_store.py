"""The Redis store's compaction check, without Redis: a snapshot may replace log entries only
when it holds all of them, deletions included (a node whose copy lags must not drop any)."""

from __future__ import annotations

from pycrdt import Doc, Text
from veraltheim.service.cluster.redis_store import removable


def test_a_snapshot_drops_only_entries_it_holds():
    doc = Doc()
    text = doc.get("t", type=Text)
    text += "hello world"
    u1 = doc.get_update()
    lagging = Doc()
    lagging.apply_update(u1)  # another node's copy, one update behind
    sv = doc.get_state()
    del text[0:6]  # a deletion: the state vector does not show it
    u2 = doc.get_update(sv)
    entries = [(1, u1), (2, u2)]

    assert removable(doc.get_update(), None, entries, doc.get_state()) == [1, 2]
    # the lagging copy's snapshot would lose the deletion: nothing may go
    assert removable(lagging.get_update(), None, entries, lagging.get_state()) is None
    # nor may a snapshot that lacks what the stored snapshot holds
    assert removable(lagging.get_update(), doc.get_update(), [], lagging.get_state()) is None


def test_pending_updates_stay_in_the_log():
    a = Doc()
    text = a.get("t", type=Text)
    text += "x"
    sv = a.get_state()
    text += "y"
    later = a.get_update(sv)  # depends on the first update, which the other node never got
    other = Doc()
    other.apply_update(later)  # pending there: not in its encoded state
    assert removable(other.get_update(), None, [(5, later)], other.get_state()) == []
