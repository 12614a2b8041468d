"""A webhook receiver on 127.0.0.1 for tests: a real HTTP server in a thread.

It checks every delivery's Standard Webhooks signature with code of its own (the
recipe docs/webhooks.md gives integrators, not Kopilka's signing module), and answers as
its ``script`` says, one step per request, then ``then`` for every request after:

* an ``int``: that HTTP status, with a short text body (``410``, ``500``, ``204``, ...);
* ``(status, {header: value})``: the same with headers (``Retry-After``, ``Location``);
* ``"hang"``: no answer for ``hang_seconds`` (longer than the sender's timeout);
* ``"drop"``: the connection closed without an answer.

Usage::

    with webhook_receiver(script=[500, "hang"]) as receiver:
        receiver.secrets = [endpoint.secret]
        ...                      # deliveries to receiver.url
        assert [r.verified for r in receiver.received] == [True, True, True]
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Step = int | str | tuple[int, dict[str, str]]
TOLERANCE_SECONDS = 5 * 60


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Whether one of the delivery's signatures is ``secret``'s, and its timestamp fresh."""
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    if not msg_id or not timestamp.isdigit():
        return False
    if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for signature in headers.get("webhook-signature", "").split():
        version, _, value = signature.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool  # signed with one of the receiver's secrets
    step: Step

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def signatures(self) -> list[str]:
        return self.headers.get("webhook-signature", "").split()


@dataclass
class Receiver:
    script: list[Step] = field(default_factory=list)
    then: Step = 200
    hang_seconds: float = 2.0
    secrets: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        # The query is the receiver's own token: Kopilka must keep it out of what it stores.
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks?token=receiver-own"

    def next_step(self) -> Step:
        with self._lock:
            return self.script.pop(0) if self.script else self.then

    def note(self, received: Received) -> None:
        with self._lock:
            self.received.append(received)

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                step = receiver.next_step()
                verified = any(verify(s, headers, body) for s in receiver.secrets)
                receiver.note(Received(self.path, headers, body, verified, step))
                if step == "hang":
                    time.sleep(receiver.hang_seconds)
                    self.close_connection = True
                    return
                if step == "drop":
                    self.close_connection = True
                    return
                status, extra = step if isinstance(step, tuple) else (int(step), {})
                answer = f"answer {status} " + "x" * 900
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(answer.encode())))
                self.end_headers()
                self.wfile.write(answer.encode())

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@contextmanager
def webhook_receiver(**options: Any) -> Iterator[Receiver]:
    receiver = Receiver(**options).start()
    try:
        yield receiver
    finally:
        receiver.close()
