"""service.auth: signed tokens, refused when missing, forged, tampered or expired."""

import base64
import json

import pytest
from veraltheim.service.auth import TokenError, issue_token, verify_token

SECRET = "s3cret"


def test_round_trip_carries_user_expiry_and_claims():
    token = issue_token(SECRET, "alice", 60, {"read_only": True}, now=1000.0)
    claims = verify_token(SECRET, token, now=1059.0)
    assert claims["user"] == "alice"
    assert claims["exp"] == 1060.0 and claims["iat"] == 1000
    assert claims["read_only"] is True


def test_token_is_url_and_subprotocol_safe():
    token = issue_token(SECRET, "ünïcode user", 60)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def test_expired():
    token = issue_token(SECRET, "alice", 60, now=1000.0)
    with pytest.raises(TokenError, match="expired"):
        verify_token(SECRET, token, now=1060.0)


@pytest.mark.parametrize("token", [None, ""])
def test_missing(token):
    with pytest.raises(TokenError, match="missing"):
        verify_token(SECRET, token)


def test_forged_with_another_secret():
    with pytest.raises(TokenError, match="invalid token: bad signature"):
        verify_token(SECRET, issue_token("other", "alice", 60))


def test_tampered_payload_is_refused():
    version, payload, sig = issue_token(SECRET, "alice", 60).split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["user"] = "mallory"
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError, match="bad signature"):
        verify_token(SECRET, f"{version}.{forged}.{sig}")


@pytest.mark.parametrize("token", ["abc", "v2.a.b", "v1.a.b.c", "v1.é.x", "v1..", 42])
def test_garbage_is_invalid(token):
    with pytest.raises(TokenError, match="invalid"):
        verify_token(SECRET, token)


def test_issue_refuses_bad_arguments():
    for ttl in (0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="ttl must be a positive number of seconds"):
            issue_token(SECRET, "alice", ttl)
    with pytest.raises(ValueError, match="user"):
        issue_token(SECRET, "", 60)
    with pytest.raises(ValueError, match="may not set exp"):
        issue_token(SECRET, "alice", 60, {"exp": 1})
