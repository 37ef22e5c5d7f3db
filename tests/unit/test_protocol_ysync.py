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


def test_a_long_varint_is_refused_at_once():
    """Issue 10, defect 3: a 1 MiB run of 0xff bytes as a length (it took minutes: every byte
    grew one big integer) is refused after 10 bytes; a length past the end is refused too."""
    from veraltheim.protocol.ysync import MAX_VARINT_BYTES, parse_awareness_update

    for message in (b"\x01" + b"\xff" * (1 << 20), b"\x00\x02" + b"\x80" * (1 << 20)):
        with pytest.raises(BadMessage, match=f"longer than {MAX_VARINT_BYTES} bytes"):
            parse_message(message)
    with pytest.raises(BadMessage, match="runs past the end"):
        parse_message(b"\x01\xff\xff\x03")
    with pytest.raises(BadMessage, match="longer than"):
        parse_awareness_update(b"\x01" + b"\xff" * 1000, max_states=4, max_state_bytes=64)
    with pytest.raises(BadMessage, match="at most"):
        parse_awareness_update(b"\xff\xff\x03", max_states=4, max_state_bytes=64)


def test_pending_updates_are_recognised(doc):
    from pycrdt import Text
    from veraltheim.protocol.ysync import update_is_pending

    source = Doc()
    updates: list[bytes] = []
    source.observe(lambda e: updates.append(e.update))
    text = source.get("t", type=Text)
    text += "ab"
    text += "cd"
    del text[0:1]
    first, second, deletion = updates
    for update in (second, deletion):  # each one alone: its dependency is missing
        alone = Doc()
        alone.apply_update(update)
        assert update_is_pending(update, alone.get_state())
    alone = Doc()
    alone.apply_update(first)
    assert not update_is_pending(first, alone.get_state())
    assert not any(update_is_pending(u, source.get_state()) for u in updates)


def test_a_state_vector_is_parsed_once_for_many_updates(monkeypatch):
    from veraltheim.protocol import ysync

    calls = []
    real = ysync.parse_state_vector
    monkeypatch.setattr(ysync, "parse_state_vector", lambda data: calls.append(1) or real(data))
    ysync._clocks.cache_clear()
    docs = [Doc() for _ in range(50)]  # 50 clients: a state vector of 50 entries
    updates, subs = [], []
    for i, d in enumerate(docs):
        subs.append(d.observe(lambda e: updates.append(e.update)))
        d.get("m", type=Map)[f"k{i}"] = i
    merged = Doc()
    for u in updates:
        merged.apply_update(u)
    state = merged.get_state()
    assert not any(ysync.update_is_pending(u, state) for u in updates)
    assert len(calls) == 1
