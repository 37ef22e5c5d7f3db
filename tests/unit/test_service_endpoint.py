"""Handshake helpers: the phoenix.js subprotocol token and close reasons that fit a frame."""

import base64

import pytest
from veraltheim.protocol.constants import AUTH_TOKEN_PREFIX
from veraltheim.service.auth import TokenError
from veraltheim.service.endpoint import token_from_subprotocols
from veraltheim.service.socket import MAX_CLOSE_REASON, close_reason

TOKEN = "v1.eyJ1c2VyIjoiYSJ9.c2lnX"  # its base64 ends in '=' padding, which phoenix.js strips


def phx(encoded: str) -> str:
    return AUTH_TOKEN_PREFIX + encoded


def test_token_from_phoenix_js_standard_base64_without_padding():
    encoded = base64.b64encode(TOKEN.encode()).decode().rstrip("=")
    assert token_from_subprotocols([f"phoenix, {phx(encoded)}"]) == TOKEN
    assert token_from_subprotocols(["phoenix", phx(encoded)]) == TOKEN


def test_token_in_url_safe_base64_is_accepted_too():
    text = "~~~?>?"  # standard base64 "fn5+Pz4/", URL-safe "fn5-Pz4_"
    encoded = base64.urlsafe_b64encode(text.encode()).decode()
    assert "-" in encoded and "_" in encoded
    assert token_from_subprotocols([phx(encoded)]) == text


def test_a_subprotocol_token_that_is_not_utf8_is_invalid():
    encoded = base64.b64encode(b"\xff\xfe\xfd").decode()
    with pytest.raises(TokenError, match="invalid token"):
        token_from_subprotocols([phx(encoded)])


def test_no_token_subprotocol_means_no_token():
    assert token_from_subprotocols([]) is None
    assert token_from_subprotocols(["phoenix"]) is None


def test_bad_base64_in_the_subprotocol_is_an_invalid_token():
    with pytest.raises(TokenError, match="invalid token: bad base64"):
        token_from_subprotocols([phx("a$b")])


def test_close_reason_fits_a_control_frame():
    assert close_reason("short") == "short"
    long = close_reason("é" * 200)
    assert len(long.encode()) <= MAX_CLOSE_REASON and long.endswith("...")
