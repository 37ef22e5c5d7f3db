"""The Push the app awaits (client/net/push.py); the rules behind it (refs, replies, timeouts)
are tested on the machine in test_protocol_channel_client.py."""

import asyncio
import gc

import pytest
from veraltheim.client.net.push import Push, PushTimeout, Reply


async def test_awaiting_a_push_gives_its_reply_once():
    push = Push("e", {}, 5)
    push.resolve(Reply("ok", {"n": 1}))
    push.resolve(Reply("error", {}))  # a second answer changes nothing
    push.fail(PushTimeout("late"))
    assert push.done and await push == Reply("ok", {"n": 1})


async def test_a_failed_push_raises_when_awaited():
    push = Push("e", {}, 5)
    push.fail(PushTimeout("no reply"))
    with pytest.raises(PushTimeout, match="no reply"):
        await push


async def test_a_failed_push_nobody_awaits_does_not_warn(caplog):
    push = Push("e", {}, 5)
    push.fail(PushTimeout("nobody listens"))
    del push
    gc.collect()
    await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text
