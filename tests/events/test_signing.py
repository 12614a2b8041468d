"""Signatures match the Standard Webhooks reference, and the recipe docs/webhooks.md gives
integrators verifies what Kopilka sends."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest

from kopilka.events.signing import new_secret, secret_key, sign, signature_header
from tests.events.conftest import Hooks
from tests.events.receiver import Receiver

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def test_the_reference_vector_of_standard_webhooks() -> None:
    # From the reference library's own tests (standard-webhooks, libraries/python).
    signature = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp=1614265330,
        body=b'{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_secrets_are_whsec_and_24_random_bytes() -> None:
    made = {new_secret() for _ in range(50)}
    assert len(made) == 50
    for secret in made:
        assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{32}", secret)
        assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 24
    with pytest.raises(ValueError) as bad:
        secret_key("whsec_not base64!")
    assert "not base64!" not in str(bad.value)  # a secret never goes into a message


def test_several_secrets_make_several_signatures() -> None:
    first, second = new_secret(), new_secret()
    header = signature_header([first, second], msg_id="evt_1", timestamp=1, body=b"{}")
    assert header.split(" ") == [
        sign(first, msg_id="evt_1", timestamp=1, body=b"{}"),
        sign(second, msg_id="evt_1", timestamp=1, body=b"{}"),
    ]


def _python_recipe() -> dict[str, Any]:
    """The verification recipe of docs/webhooks.md, run as an integrator would."""
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(r"```python\n(.*?)```", text, re.S)
    assert match, "docs/webhooks.md shows how to verify a signature in Python"
    namespace: dict[str, Any] = {}
    exec(compile(match.group(1), str(DOCS), "exec"), namespace)  # noqa: S102 (our own docs)
    return namespace


def test_the_documented_recipe_verifies_a_real_delivery(hooks: Hooks, receiver: Receiver) -> None:
    endpoint = hooks.endpoint(receiver.url, receiver=receiver)
    hooks.emit("subscriber.activated", subscriber_id=3)
    hooks.run(0)
    (got,) = receiver.received
    verify = _python_recipe()["verify_webhook"]
    assert verify(endpoint.secret, got.headers, got.body)["type"] == "subscriber.activated"
    with pytest.raises(ValueError):
        verify(new_secret(), got.headers, got.body)
    with pytest.raises(ValueError):
        verify(endpoint.secret, got.headers, got.body + b" ")
