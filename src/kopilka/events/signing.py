"""Signing webhooks the Standard Webhooks way (https://www.standardwebhooks.com).

A secret is ``whsec_`` and the base64 of 24 random bytes (the spec's minimum; the key is
the bytes, not the text). A delivery carries three headers::

    webhook-id: evt_42                    the event's id, the same on every retry
    webhook-timestamp: 1674087231         this attempt, in Unix seconds
    webhook-signature: v1,<base64>        HMAC-SHA256 of "{id}.{timestamp}.{body}"

Several signatures, space-separated, while a rotated secret is still honoured: the
receiver accepts the delivery when any one matches a secret it knows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
SECRET_BYTES = 24
SIGNATURE_VERSION = "v1"


def new_secret() -> str:
    """A fresh signing secret, ``whsec_`` + base64 of 24 random bytes."""
    secret = SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")
    assert len(secret_key(secret)) == SECRET_BYTES
    return secret


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret: its base64 part decoded (the prefix is optional)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as error:
        # Never put the secret into the message: it may end up in a log.
        raise ValueError("a webhook secret is whsec_ followed by base64") from error
    assert key, "an empty key signs nothing"
    return key


def sign(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """One signature, ``v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}.{body}">``."""
    assert "." not in msg_id and timestamp >= 0, "the id and timestamp must not hold a '.'"
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def signature_header(secrets_: Sequence[str], *, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per secret, space-separated."""
    assert secrets_, "a delivery is signed with at least one secret"
    return " ".join(sign(s, msg_id=msg_id, timestamp=timestamp, body=body) for s in secrets_)
