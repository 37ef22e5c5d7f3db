"""The Phoenix Channels V2 wire format, sans-I/O: frames in, messages out."""

from protocol.constants import *  # noqa: F403
from protocol.envelope import pack_envelope, unpack_envelope
from protocol.errors import ProtocolError
from protocol.message import Message
from protocol.serializer import decode, encode, encode_text

__all__ = [
    "Message",
    "ProtocolError",
    "decode",
    "encode",
    "encode_text",
    "pack_envelope",
    "unpack_envelope",
]
