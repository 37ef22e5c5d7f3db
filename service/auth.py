"""Signed tokens like Phoenix.Token: who connects, until when, with extra claims.

A token is `v1.<base64url payload>.<base64url signature>`: the payload is JSON with the user, the
issue time (iat), the expiry (exp) and any extra claims; the signature is HMAC-SHA256 over
`v1.<payload>` with a key derived from the service secret. The version prefix lets the format
change without old tokens being misread.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import time
from typing import Any

from veraltheim.protocol.constants import KERNELS_GRANT

VERSION = "v1"
# What a token's `grants` claim may hold (`token issue --grant NAME`).
GRANTS = (KERNELS_GRANT,)
_KEY_INFO = b"veraltheim user token v1"
RESERVED_CLAIMS = ("user", "iat", "exp")


class TokenError(ValueError):
    """A token that cannot be used; the message says missing, invalid (why) or expired."""


def _key(secret: str) -> bytes:
    # Derived so the raw secret is never the MAC key of anything a client can see.
    return hmac.new(secret.encode(), _KEY_INFO, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, signed_part: str) -> str:
    return _b64(hmac.new(_key(secret), signed_part.encode("ascii"), hashlib.sha256).digest())


def issue_token(
    secret: str,
    user_id: str,
    ttl_s: float,
    claims: dict[str, Any] | None = None,
    *,
    now: float | None = None,
) -> str:
    """A token for user_id valid for ttl_s seconds; claims are extra JSON values (read_only...)."""
    if not secret:
        raise ValueError("a token needs a non-empty secret")
    if not isinstance(user_id, str) or not user_id:
        raise ValueError("a token needs a non-empty user id")
    if not 0 < ttl_s < math.inf:
        raise ValueError(f"ttl must be a positive number of seconds, got {ttl_s}")
    extra = dict(claims or {})
    clash = [k for k in RESERVED_CLAIMS if k in extra]
    if clash:
        raise ValueError(f"claims may not set {', '.join(clash)}")
    issued = time.time() if now is None else now
    body = {"user": user_id, "iat": int(issued), "exp": issued + ttl_s, **extra}
    payload = _b64(json.dumps(body, separators=(",", ":"), allow_nan=False).encode())
    signed_part = f"{VERSION}.{payload}"
    return f"{signed_part}.{_sign(secret, signed_part)}"


def verify_token(secret: str, token: str | None, now: float | None = None) -> dict[str, Any]:
    """The claims of a valid token (user, iat, exp, extras); TokenError otherwise."""
    if not token:
        raise TokenError("missing token")
    if not isinstance(token, str):
        raise TokenError("invalid token: not a string")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("invalid token: malformed")
    version, payload, signature = parts
    if version != VERSION:
        raise TokenError(f"invalid token: unknown version {version[:16]!r}")
    try:
        expected = _sign(secret, f"{version}.{payload}")
    except UnicodeEncodeError:
        raise TokenError("invalid token: malformed") from None
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise TokenError("invalid token: bad signature")
    try:
        claims = json.loads(_unb64(payload))
    except (binascii.Error, ValueError):
        raise TokenError("invalid token: unreadable payload") from None
    if not isinstance(claims, dict) or not isinstance(claims.get("user"), str):
        raise TokenError("invalid token: no user")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise TokenError("invalid token: no expiry")
    if (time.time() if now is None else now) >= exp:
        raise TokenError("token expired")
    return claims


def has_grant(claims: dict[str, Any] | None, grant: str) -> bool:
    """Whether verified claims carry `grant` in their `grants` list."""
    grants = (claims or {}).get("grants")
    return isinstance(grants, list) and grant in grants
