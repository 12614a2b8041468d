"""What an idempotent operation remembers of its request, to tell a replay from a
conflict (SPEC L-3): a digest of its content, the same for the same content whatever
the order of its keys."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def request_hash(payload: dict[str, Any]) -> str:
    """SHA-256 of ``payload`` as canonical JSON (sorted keys, no spaces; dates and the
    like as text)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
