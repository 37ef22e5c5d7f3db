"""Presence sync with phoenix.js semantics (client/net/presence.py)."""

import copy

from veraltheim.client.net.presence import Presence, list_presences, sync_diff, sync_state


def meta(ref, **extra):
    return {"phx_ref": ref, **extra}


def pres(*metas):
    return {"metas": list(metas)}


class Recorder:
    def __init__(self):
        self.joins, self.leaves = [], []

    def join(self, key, current, new):
        self.joins.append((key, copy.deepcopy(current), copy.deepcopy(new)))

    def leave(self, key, current, left):
        self.leaves.append((key, copy.deepcopy(current), copy.deepcopy(left)))


def test_sync_state_from_empty_joins_everyone():
    rec = Recorder()
    new = {"alice": pres(meta("1")), "bob": pres(meta("2"))}
    state = sync_state({}, new, rec.join, rec.leave)
    assert state == new
    assert [(k, cur) for k, cur, _ in rec.joins] == [("alice", None), ("bob", None)]
    assert rec.leaves == []


def test_sync_state_reports_what_changed_while_away():
    rec = Recorder()
    current = {"alice": pres(meta("1"), meta("2")), "carol": pres(meta("5"))}
    new = {"alice": pres(meta("2"), meta("3")), "bob": pres(meta("4"))}
    state = sync_state(current, new, rec.join, rec.leave)
    assert set(state) == {"alice", "bob"}
    assert [m["phx_ref"] for m in state["alice"]["metas"]] == ["2", "3"]
    joins = {k: [m["phx_ref"] for m in new_p["metas"]] for k, _, new_p in rec.joins}
    leaves = {k: [m["phx_ref"] for m in left["metas"]] for k, _, left in rec.leaves}
    assert joins == {"alice": ["3"], "bob": ["4"]}
    assert leaves == {"alice": ["1"], "carol": ["5"]}


def test_sync_diff_join_keeps_current_metas_first():
    state = {"alice": pres(meta("1", device="phone"))}
    rec = Recorder()
    out = sync_diff(
        state,
        {"joins": {"alice": pres(meta("2", device="laptop"))}, "leaves": {}},
        rec.join,
        rec.leave,
    )
    assert [m["phx_ref"] for m in out["alice"]["metas"]] == ["1", "2"]
    key, current, new = rec.joins[0]
    assert key == "alice" and current == pres(meta("1", device="phone"))
    assert new == pres(meta("2", device="laptop"))


def test_sync_diff_leave_of_one_meta_keeps_the_key_and_of_the_last_removes_it():
    state = {"alice": pres(meta("1"), meta("2"))}
    rec = Recorder()
    one_left = sync_diff(
        state, {"joins": {}, "leaves": {"alice": pres(meta("1"))}}, rec.join, rec.leave
    )
    assert one_left == {"alice": pres(meta("2"))}
    assert rec.leaves[-1][1] == pres(meta("2"))  # what remains is passed to on_leave
    gone = sync_diff(
        one_left, {"joins": {}, "leaves": {"alice": pres(meta("2"))}}, rec.join, rec.leave
    )
    assert gone == {}
    assert rec.leaves[-1][1] == pres()


def test_leave_of_an_unknown_key_is_ignored():
    rec = Recorder()
    out = sync_diff({}, {"joins": {}, "leaves": {"ghost": pres(meta("9"))}}, rec.join, rec.leave)
    assert out == {} and rec.leaves == []


def test_inputs_are_never_mutated():
    current = {"alice": pres(meta("1"))}
    new = {"alice": pres(meta("2")), "bob": pres(meta("3"))}
    diff = {"joins": {"alice": pres(meta("4"))}, "leaves": {"alice": pres(meta("1"))}}
    snapshot = copy.deepcopy((current, new, diff))
    sync_diff(sync_state(current, new), diff)
    assert (current, new, diff) == snapshot


def test_list_gives_key_and_metas_or_the_chooser_result():
    state = {"alice": pres(meta("1", at=1)), "bob": pres(meta("2"), meta("3"))}
    assert list_presences(state) == [("alice", [meta("1", at=1)]), ("bob", [meta("2"), meta("3")])]
    assert list_presences(state, lambda key, p: (key, len(p["metas"]))) == [
        ("alice", 1),
        ("bob", 2),
    ]


class FakeChannel:
    """Just what Presence uses: on(event, cb) and join_ref."""

    def __init__(self):
        self.join_ref = "1"
        self.handlers = {}

    def on(self, event, callback):
        self.handlers[event] = callback
        return 1

    def fire(self, event, payload):
        self.handlers[event](payload)


def test_presence_holds_diffs_until_the_state_of_the_current_join():
    ch = FakeChannel()
    presence = Presence(ch)
    synced, joined, left = [], [], []
    presence.on_sync(lambda: synced.append(len(presence.list())))
    presence.on_join(lambda key, cur, new: joined.append(key))
    presence.on_leave(lambda key, cur, lft: left.append(key))

    # a diff before the first presence_state waits, then applies after it
    ch.fire("presence_diff", {"joins": {"bob": pres(meta("2"))}, "leaves": {}})
    assert presence.list() == [] and synced == []
    ch.fire("presence_state", {"alice": pres(meta("1"))})
    assert [k for k, _ in presence.list()] == ["alice", "bob"]
    assert synced == [2] and joined == ["alice", "bob"]

    # after a rejoin (new join_ref) diffs wait again for the new state
    ch.join_ref = "7"
    ch.fire("presence_diff", {"joins": {}, "leaves": {"alice": pres(meta("1"))}})
    assert presence.in_pending_sync_state() and len(presence.list()) == 2
    ch.fire("presence_state", {"bob": pres(meta("2")), "carol": pres(meta("8"))})
    assert [k for k, _ in presence.list()] == ["bob", "carol"]
    assert left == ["alice"] and joined[-1] == "carol"
    ch.fire("presence_diff", {"joins": {}, "leaves": {"carol": pres(meta("8"))}})
    assert [k for k, _ in presence.list()] == ["bob"] and synced[-1] == 1
