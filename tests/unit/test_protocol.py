"""protocol/: every frame kind, exact bytes as phoenix.js 1.8 writes/reads them, and errors."""

import json

import pytest
from veraltheim.protocol import (
    PHX_REPLY,
    Message,
    ProtocolError,
    decode,
    encode,
    pack_envelope,
    unpack_envelope,
)


def test_text_frame_is_the_phoenix_v2_array():
    msg = Message("1", "2", "lobby", "phx_join", {"a": 1})
    frame = encode(msg, sender="client")
    assert frame == '["1","2","lobby","phx_join",{"a":1}]'
    assert decode(frame, sender="client") == msg


def test_heartbeat_and_reply_text():
    hb = decode('[null,"7","phoenix","heartbeat",{}]', sender="client")
    assert hb == Message(None, "7", "phoenix", "heartbeat", {})
    reply = Message.reply(None, "7", "phoenix", "ok", {})
    assert json.loads(encode(reply, sender="server")) == [
        None,
        "7",
        "phoenix",
        "phx_reply",
        {"status": "ok", "response": {}},
    ]


def test_client_binary_push_matches_phoenix_js_layout():
    msg = Message("12", "34", "lobby", "ping", b"\x00\xffdata")
    frame = encode(msg, sender="client")
    assert frame == bytes([0, 2, 2, 5, 4]) + b"1234lobbyping" + b"\x00\xffdata"
    assert decode(frame, sender="client") == msg


def test_server_binary_push_has_three_lengths_and_no_ref():
    msg = Message("3", None, "compute:default", "progress", b"\x01")
    frame = encode(msg, sender="server")
    assert frame == bytes([0, 1, 15, 8]) + b"3compute:defaultprogress\x01"
    assert decode(frame, sender="server") == msg


def test_binary_reply_kind_1():
    msg = Message.reply("1", "9", "lobby", "ok", b"abc")
    frame = encode(msg, sender="server")
    assert frame == bytes([1, 1, 1, 5, 2]) + b"19lobbyokabc"
    out = decode(frame, sender="server")
    assert out.event == PHX_REPLY and out.payload == {"status": "ok", "response": b"abc"}


def test_binary_broadcast_kind_2():
    msg = Message(None, None, "lobby", "shout", b"hi")
    frame = encode(msg, sender="server")
    assert frame == bytes([2, 5, 5]) + b"lobbyshouthi"
    assert decode(frame, sender="server") == msg


def test_empty_refs_in_binary_mean_null():
    frame = bytes([0, 0, 0, 1, 1]) + b"te"
    assert decode(frame, sender="client") == Message(None, None, "t", "e", b"")


@pytest.mark.parametrize("field", ["join_ref", "ref", "topic", "event"])
def test_binary_field_over_255_bytes_is_refused_on_encode(field):
    values = {"join_ref": "1", "ref": "2", "topic": "t", "event": "e"}
    values[field] = "é" * 128  # 256 bytes of UTF-8
    with pytest.raises(ProtocolError, match=f"{field} is 256 bytes"):
        encode(Message(payload=b"x", **values), sender="client")


def test_255_byte_field_is_fine():
    msg = Message("1", "2", "t" * 255, "e", b"x")
    assert decode(encode(msg, sender="client"), sender="client") == msg


@pytest.mark.parametrize(
    ("frame", "sender", "says"),
    [
        ("", "client", "not JSON"),
        ("{", "client", "not JSON"),
        ('{"a": 1}', "client", "not dict"),
        ('[1, "2", "t", "e", {}]', "client", "join_ref must be a string or null, not int"),
        ('[null, null, 5, "e", {}]', "client", "topic must be a string, not int"),
        ('[null, null, "t", null, {}]', "client", "event must be a string, not NoneType"),
        ('["1", "2", "t", "e"]', "client", "not a list of 4"),
        ('[null, null, "t", "e", NaN]', "client", "NaN is not valid JSON"),
        ('[null, null, "\\ud800", "e", {}]', "client", "topic is not valid UTF-8"),
        ('[null, null, "t", "\ud800", {}]', "client", "event is not valid UTF-8"),  # raw surrogate
        ("[" * 100_000, "client", "not JSON"),
        ('["1", "2", "t", "phx_reply", {"response": {}}]', "server", "reply payload"),
        (b"", "client", "empty binary frame"),
        (b"\x07abc", "client", "unknown binary frame kind 7"),
        (b"\x00\x01", "client", "too short"),
        (bytes([0, 5, 0, 0, 0]) + b"ab", "client", "join_ref needs 5 bytes, 2 left"),
        (bytes([0, 1, 0, 1, 1]) + b"\xff" + b"te", "client", "join_ref .* not valid UTF-8"),
        (bytes([1, 0, 0, 1, 2]) + b"tok", "client", "client does not send binary reply"),
        (bytes([2, 1]), "server", "too short"),
        (bytes([1, 0, 0, 3, 2]) + b"to", "server", "truncated: topic"),
        (12, "client", "not int"),
    ],
)
def test_malformed_frames_say_what_is_wrong(frame, sender, says):
    with pytest.raises(ProtocolError, match=says):
        decode(frame, sender=sender)


def test_bad_sender_is_refused():
    with pytest.raises(ProtocolError, match="sender"):
        decode("[]", sender="peer")


def test_encode_refuses_what_it_cannot_write():
    with pytest.raises(ProtocolError, match="not JSON"):
        encode(Message(None, None, "t", "e", {"x": object()}), sender="server")
    with pytest.raises(ProtocolError, match="not JSON"):
        encode(Message(None, None, "t", "e", {"x": float("nan")}), sender="server")
    with pytest.raises(ProtocolError, match="no ref"):
        encode(Message("1", "2", "t", "e", b""), sender="server")
    with pytest.raises(ProtocolError, match="client does not send replies"):
        encode(Message.reply("1", "2", "t", "ok", b""), sender="client")
    with pytest.raises(ProtocolError, match="reply payload"):  # bytes where the dict goes
        encode(Message("1", "2", "t", PHX_REPLY, b"raw"), sender="server")


def test_envelope_round_trip_and_errors():
    data = pack_envelope({"kernel": "hash.sha256", "id": "j1"}, b"\x00\x01")
    assert data[:4] == len(b'{"kernel":"hash.sha256","id":"j1"}').to_bytes(4, "big")
    assert unpack_envelope(data) == ({"kernel": "hash.sha256", "id": "j1"}, b"\x00\x01")
    with pytest.raises(ProtocolError, match="shorter than its 4-byte length"):
        unpack_envelope(b"\x00\x00")
    with pytest.raises(ProtocolError, match="runs past the end"):
        unpack_envelope(b"\x00\x00\x00\x09{}")
    with pytest.raises(ProtocolError, match="not JSON"):
        unpack_envelope(b"\x00\x00\x00\x02{x")
    with pytest.raises(ProtocolError, match="JSON object"):
        unpack_envelope(b"\x00\x00\x00\x02[]")
    with pytest.raises(ProtocolError, match="JSON object"):
        pack_envelope([], b"")  # type: ignore[arg-type]


@pytest.mark.parametrize("number", ["1e999", "-1e999", "NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused_everywhere(number):
    """Issue 10, defects 9 and 10: JSON that decodes to infinity or NaN is refused by every
    decoder (frames and compute envelope headers), so no reply fails to encode later."""
    from veraltheim.protocol import ProtocolError, decode, unpack_envelope

    frame = f'[null,"1","lobby","phx_join",{{"meta":{{"x":{number}}}}}]'
    with pytest.raises(ProtocolError, match="not JSON"):
        decode(frame, sender="client")
    header = f'{{"kernel":"k","id":"1","deadline_s":{number}}}'.encode()
    with pytest.raises(ProtocolError, match="not JSON"):
        unpack_envelope(len(header).to_bytes(4, "big") + header)
