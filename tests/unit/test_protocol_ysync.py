"""protocol/ysync.py: the y-protocols messages both the doc channel and the client parse."""

import pytest
from pycrdt import Awareness, Doc, Map, create_awareness_message, create_update_message
from veraltheim.protocol.ysync import (
    BadMessage,
    Kind,
    YMessage,
    create_sync_message,
    create_sync_step2_message,
    parse_message,
)


@pytest.fixture
def doc() -> Doc:
    doc = Doc()
    doc.get("m", type=Map)["k"] = 1
    return doc


def test_every_kind_parses_with_its_payload(doc):
    update = doc.get_update()
    awareness = Awareness(doc).encode_awareness_update([doc.client_id])
    assert parse_message(create_sync_message(doc)).kind is Kind.SYNC_STEP1
    step2 = parse_message(create_sync_step2_message(update))
    assert (step2.kind, step2.data) == (Kind.SYNC_STEP2, update)
    assert parse_message(create_update_message(update)) == YMessage(Kind.UPDATE, update)
    assert parse_message(create_awareness_message(awareness)) == YMessage(Kind.AWARENESS, awareness)
    assert parse_message(b"\x03").kind is Kind.QUERY_AWARENESS
    assert Kind.UPDATE.carries_update and not Kind.SYNC_STEP1.carries_update


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"", "empty"),
        (b"\x07", "unknown y-protocols message type 7"),
        (b"\x00\x09\x00", "unknown y-protocols sync message type"),
        (None, "truncated|length"),
        ("extra", "length does not match"),
    ],
)
def test_malformed_messages_raise_bad_message(doc, message, reason):
    full = create_update_message(doc.get_update())
    message = {None: full[:-2], "extra": full + b"x"}.get(message, message)
    with pytest.raises(BadMessage, match=reason):
        parse_message(message)
