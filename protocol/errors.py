"""The one exception the protocol layer raises."""


class ProtocolError(ValueError):
    """A frame or message that is not valid Phoenix V2; the message says what is wrong."""
