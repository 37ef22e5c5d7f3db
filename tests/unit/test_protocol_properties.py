"""Property tests: every frame kind round-trips; arbitrary input raises only ProtocolError."""

from hypothesis import given
from hypothesis import strategies as st
from veraltheim.protocol import (
    Message,
    ProtocolError,
    decode,
    encode,
    pack_envelope,
    unpack_envelope,
)

short = st.text(min_size=1).filter(lambda s: 0 < len(s.encode("utf-8", "surrogatepass")) <= 255)
field = short.filter(lambda s: all(not 0xD800 <= ord(c) <= 0xDFFF for c in s))
maybe_ref = st.none() | field
json_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(), kids, max_size=4),
    max_leaves=12,
)
text_msg = st.builds(Message, maybe_ref, maybe_ref, st.text(), st.text(), json_value)


def roundtrip(msg: Message, sender: str) -> Message:
    return decode(encode(msg, sender=sender), sender=sender)


@given(text_msg, st.sampled_from(["client", "server"]))
def test_text_frames_round_trip(msg, sender):
    assert roundtrip(msg, sender) == msg


@given(maybe_ref, maybe_ref, field, field, st.binary())
def test_client_binary_push_round_trips(join_ref, ref, topic, event, payload):
    msg = Message(join_ref, ref, topic, event, payload)
    assert roundtrip(msg, "client") == msg


@given(field, field, field, st.binary())
def test_server_binary_push_round_trips(join_ref, topic, event, payload):
    msg = Message(join_ref, None, topic, event, payload)
    assert roundtrip(msg, "server") == msg


@given(maybe_ref, maybe_ref, field, field, st.binary())
def test_binary_reply_round_trips(join_ref, ref, topic, status, response):
    msg = Message.reply(join_ref, ref, topic, status, response)
    assert roundtrip(msg, "server") == msg


@given(field, field, st.binary())
def test_binary_broadcast_round_trips(topic, event, payload):
    msg = Message(None, None, topic, event, payload)
    assert roundtrip(msg, "server") == msg


def decodes_or_protocol_error(frame, sender):
    try:
        msg = decode(frame, sender=sender)
    except ProtocolError as exc:
        assert str(exc)
        return
    assert isinstance(msg, Message)
    assert isinstance(msg.topic, str) and isinstance(msg.event, str)


@given(st.binary(), st.sampled_from(["client", "server"]))
def test_random_bytes_raise_only_protocol_error(frame, sender):
    decodes_or_protocol_error(frame, sender)


@given(st.binary(min_size=1).map(lambda b: bytes([b[0] % 3]) + b[1:]))
def test_random_bytes_of_known_kinds_raise_only_protocol_error(frame):
    decodes_or_protocol_error(frame, "client")
    decodes_or_protocol_error(frame, "server")


@given(st.text(), st.sampled_from(["client", "server"]))
def test_random_text_raises_only_protocol_error(frame, sender):
    decodes_or_protocol_error(frame, sender)


@given(st.lists(json_value, max_size=6))
def test_random_json_arrays_raise_only_protocol_error(items):
    import json

    decodes_or_protocol_error(json.dumps(items), "client")
    decodes_or_protocol_error(json.dumps(items), "server")


@given(st.dictionaries(st.text(), json_value, max_size=4), st.binary())
def test_envelope_round_trips(header, body):
    assert unpack_envelope(pack_envelope(header, body)) == (header, body)


@given(st.binary())
def test_random_envelopes_raise_only_protocol_error(data):
    try:
        header, body = unpack_envelope(data)
    except ProtocolError:
        return
    assert isinstance(header, dict) and isinstance(body, bytes)
