"""The Phoenix Channels V2 wire format, sans-I/O: frames in, messages out."""

from veraltheim.protocol.constants import *  # noqa: F403
from veraltheim.protocol.envelope import pack_envelope, unpack_envelope
from veraltheim.protocol.errors import ProtocolError
from veraltheim.protocol.message import Message
from veraltheim.protocol.serializer import decode, encode, encode_text

__all__ = [
    "Message",
    "ProtocolError",
    "decode",
    "encode",
    "encode_text",
    "pack_envelope",
    "unpack_envelope",
]
