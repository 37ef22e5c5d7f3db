"""Push bookkeeping: replies matched by ref, one timeout per push (client/net/push.py)."""

import asyncio

import pytest
from veraltheim.client.net.push import PendingReplies, Push, PushTimeout, Reply, reply_of


async def test_reply_goes_to_the_push_with_that_ref_only():
    pending = PendingReplies()
    a, b = Push("a", {}, 5), Push("b", {}, 5)
    a.ref, b.ref = "11", "12"
    pending.add(a)
    pending.add(b)
    assert pending.resolve("12", Reply("ok", {"to": "b"})) is b
    assert not a.done and await b == Reply("ok", {"to": "b"})
    assert pending.resolve("12", Reply("ok", {})) is None  # a second reply for a ref: ignored
    assert pending.resolve("99", Reply("ok", {})) is None  # unknown ref
    assert pending.resolve(None, Reply("ok", {})) is None
    assert len(pending) == 1


async def test_each_push_times_out_on_its_own_clock():
    forgotten = []
    quick, slow = Push("q", {}, 0.01), Push("s", {}, 30)
    quick.start_timeout(forgotten.append)
    slow.start_timeout(forgotten.append)
    with pytest.raises(PushTimeout, match=r"'q' within 0\.01 s"):
        await quick
    assert forgotten == [quick] and not slow.done
    slow.resolve(Reply("ok", {}))
    assert (await slow).ok


async def test_a_reply_after_the_timeout_changes_nothing():
    push = Push("late", {}, 0.01)
    push.ref = "5"
    pending = PendingReplies()
    pending.add(push)
    push.start_timeout(pending.discard)
    with pytest.raises(PushTimeout):
        await push
    assert pending.resolve("5", Reply("ok", {})) is None


async def test_fail_all_fails_every_waiting_push():
    pending = PendingReplies()
    pushes = [Push("e", {}, 5) for _ in range(3)]
    for i, push in enumerate(pushes):
        push.ref = str(i)
        pending.add(push)
    pending.fail_all(PushTimeout("gone"))
    results = await asyncio.gather(*pushes, return_exceptions=True)
    assert all(isinstance(r, PushTimeout) for r in results) and len(pending) == 0


def test_reply_of_reads_status_and_response_and_survives_garbage():
    assert reply_of({"status": "ok", "response": b"\x01"}) == Reply("ok", b"\x01")
    assert reply_of({"status": "error", "response": {"reason": "x"}}).ok is False
    broken = reply_of(["not", "a", "reply"])
    assert broken.status == "error" and broken.response["reason"] == "malformed reply"
