"""
HS256 JSON Web Tokens with the standard library only (hmac + hashlib + base64), enough to prove
"this request is for site user X" to im-bridge's /im/register. PyJWT (Debian: python3-jwt) does
the same with `jwt.encode(claims, secret, algorithm="HS256")`.
"""
import base64
import hashlib
import hmac
import json
import time


def _base64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_hs256(claims, secret):
    """The compact JWT of `claims` signed with `secret` (HS256)."""
    if not secret:
        raise ValueError("the JWT secret is empty")
    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = (
        _base64url(json.dumps(header, separators=(",", ":")).encode("utf-8"))
        + "."
        + _base64url(json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    )
    signature = hmac.new(secret.encode("utf-8"), signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + _base64url(signature)


def user_token(user_id, secret, lifetime_seconds, now=None):
    """A short-lived JWT whose `sub` is the site user id (im-bridge requires `sub` and `exp`)."""
    issued_at = int(now if now is not None else time.time())
    return sign_hs256({"sub": str(user_id), "iat": issued_at, "exp": issued_at + lifetime_seconds}, secret)
