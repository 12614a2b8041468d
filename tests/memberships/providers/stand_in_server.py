"""What the providers' stand-ins share: a real HTTP server on 127.0.0.1 in a thread, a
record of every request, switches that make it misbehave, sending notifications, and the
provider's hosted card page for a browser.

Misbehaving, one switch per coming request, in order (``times`` requests each):

* ``fail(status)``: answer ``status`` (500, 429, 401, ...) in the provider's error shape
  without doing anything; ``fail(500, after_processing=True)`` does the work first and
  then answers 500 (the outcome unknown to the client, as the providers warn);
* ``slow(seconds)``: do the work, but answer only after ``seconds`` (a client with a
  shorter timeout gives up, though the work is done);
* ``drop()``: close the connection without an answer.

The switches are for the API only: the card page a browser opens (``page``) is always
answered.

The card page (``card_page``: the amount, the description, a card number, "Pay" and
"Cancel"), as the providers' hosted pages behave: ``PAYING_CARD`` (4242 4242 4242 4242)
pays, ``DECLINED_CARD`` (4000 0000 0000 0002) is declined, any other number is said to be
no test card and the page stays. What the page does when the client pays or gives up is
the stand-in's; when its notifications go is the test's, set beforehand with
``notify_on_pay(url, times=1, when="before_redirect")``:

* ``url``: where the provider POSTs them (YooKassa's HTTP-notification address in the
  shop's settings, Stripe's webhook endpoint); none set (the default), none sent;
* ``times``: how many times each is POSTed (3: the provider unsure it was heard; 0:
  never);
* ``when``: ``"before_redirect"`` (the page POSTs them, then redirects the browser, so
  they arrive before the client's return) or ``"held"`` (kept until the test calls
  ``release_held()``, so they arrive after the client is back, or never).

``deliveries`` lists every notification the stand-in POSTed (``Delivery``: the url, the
event, Kopilka's status and answer): the page's, and those of the stand-in's ``notify``,
``send``, ``send_event`` (not this module's ``post``, which a test uses for a forgery).
``before_redirect(look)``: ``look(url)`` is called as the page is about to send the
browser back to ``url`` (after its notifications), to see what the shop had recorded by
then (a browser's redirected request cannot be held up by Playwright's routing).
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import httpx


@dataclass(frozen=True)
class Seen:
    """A request the stand-in received."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass(frozen=True)
class Fault:
    kind: str  # status, slow, drop
    status: int = 0
    seconds: float = 0.0
    after_processing: bool = False


@dataclass(frozen=True)
class Delivery:
    """A notification the stand-in POSTed."""

    url: str
    event: str  # payment.succeeded, checkout.session.completed, ...
    status: int  # Kopilka's HTTP status (0: no answer)
    answer: bytes  # Kopilka's body


@dataclass(frozen=True)
class _Held:
    url: str
    event: str
    body: bytes
    headers: dict[str, str]


Reply = tuple[int, bytes, dict[str, str]]
When = Literal["before_redirect", "held"]

PAYING_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"


class StandInServer:
    """Subclasses answer in ``answer`` and say what an injected failure's body is in
    ``error_reply``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.requests: list[Seen] = []
        self._faults: list[Fault] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.deliveries: list[Delivery] = []
        self._notify_url: str | None = None
        self._notify_times = 1
        self._notify_when: When = "before_redirect"
        self._held: list[_Held] = []
        self._before_redirect: Callable[[str], None] | None = None

    # ----------------------------------------------------------------------- switches

    def fail(self, status: int, times: int = 1, *, after_processing: bool = False) -> None:
        with self.lock:
            self._faults.extend(
                [Fault("status", status, after_processing=after_processing)] * times
            )

    def slow(self, seconds: float, times: int = 1) -> None:
        with self.lock:
            self._faults.extend([Fault("slow", seconds=seconds)] * times)

    def drop(self, times: int = 1) -> None:
        with self.lock:
            self._faults.extend([Fault("drop")] * times)

    def paths(self) -> list[str]:
        with self.lock:
            return [f"{seen.method} {seen.path}" for seen in self.requests]

    # ----------------------------------------------------------------------- notifications

    def notify_on_pay(
        self, url: str | None, *, times: int = 1, when: When = "before_redirect"
    ) -> None:
        """Where and when the card page's notifications go (the module's docstring)."""
        assert times >= 0 and when in ("before_redirect", "held"), (times, when)
        with self.lock:
            self._notify_url, self._notify_times, self._notify_when = url, times, when

    def release_held(self) -> list[int]:
        """POST the notifications the card page held back (``when="held"``); the
        statuses."""
        with self.lock:
            held, self._held = self._held, []
        return [self.deliver(one.url, one.event, one.body, one.headers) for one in held]

    @property
    def held(self) -> list[str]:
        """The events of the notifications held back, one per POST to come."""
        with self.lock:
            return [one.event for one in self._held]

    def before_redirect(self, look: Callable[[str], None] | None) -> None:
        """``look(url)`` is called (in the stand-in's thread) just before the card page
        redirects the browser to ``url``."""
        with self.lock:
            self._before_redirect = look

    def deliver(self, url: str, event: str, body: bytes, headers: Mapping[str, str]) -> int:
        """POST one notification as the provider does; its status (0: no answer)."""
        status, answer = post_answer(url, body, headers)
        with self.lock:
            self.deliveries.append(Delivery(url, event, status, answer))
        return status

    def page_notifies(self, event: str, body: bytes, headers: Mapping[str, str]) -> None:
        """The card page's notification, as ``notify_on_pay`` says: POSTed now (the
        page's redirect waits for it), held back, or none. Called with no lock held."""
        with self.lock:
            url, times, when = self._notify_url, self._notify_times, self._notify_when
            if url is not None and when == "held":
                self._held.extend([_Held(url, event, body, dict(headers))] * times)
        if url is not None and when == "before_redirect":
            for _ in range(times):
                self.deliver(url, event, body, headers)

    def page_redirect(self, url: str) -> Reply:
        """The card page's 303 back to the shop (``before_redirect``'s look first)."""
        with self.lock:
            look = self._before_redirect
        if look is not None:
            look(url)
        return see_other(url)

    # ----------------------------------------------------------------------- life

    @property
    def base_url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Any:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                stand_in._handle(self, "GET")

            def do_POST(self) -> None:
                stand_in._handle(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ----------------------------------------------------------------------- requests

    def answer(self, seen: Seen) -> Reply:
        raise NotImplementedError

    def error_reply(self, status: int) -> Reply:
        raise NotImplementedError

    def page(self, seen: Seen) -> Reply | None:
        """The answer when ``seen`` is for the card page a browser opens, else None
        (the API's, with its switches)."""
        return None

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        parts = urlsplit(handler.path)
        headers = {name.lower(): value for name, value in handler.headers.items()}
        seen = Seen(method, parts.path, parts.query, headers, body)
        with self.lock:
            self.requests.append(seen)
        page = self.page(seen)
        if page is not None:
            self._send(handler, page)
            return
        with self.lock:
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None and fault.kind == "drop":
            handler.close_connection = True
            return
        if fault is not None and fault.kind == "status" and not fault.after_processing:
            reply = self.error_reply(fault.status)
        else:
            reply = self.answer(seen)
            if fault is not None and fault.kind == "status":
                reply = self.error_reply(fault.status)  # done, but the client is not told
            if fault is not None and fault.kind == "slow":
                time.sleep(fault.seconds)
        self._send(handler, reply)

    def _send(self, handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        status, data, extra = reply
        try:
            handler.send_response(status)
            for name, value in extra.items():
                handler.send_header(name, value)
            if "Content-Type" not in extra:
                handler.send_header("Content-Type", "application/json; charset=utf-8")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:
            pass  # the client gave up waiting


def post(url: str, body: bytes, headers: Mapping[str, str]) -> int:
    """POST a notification as a provider does; its HTTP status (0: no answer)."""
    return post_answer(url, body, headers)[0]


def post_answer(url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
    """POST a notification as a provider does; its HTTP status (0: no answer) and body."""
    try:
        response = httpx.post(url, content=body, headers=dict(headers), timeout=10.0)
    except httpx.HTTPError:
        return 0, b""
    return response.status_code, response.content


# --------------------------------------------------------------------------- the card page


def form_of(seen: Seen) -> dict[str, str]:
    """A browser's form-encoded POST."""
    return dict(parse_qsl(seen.body.decode("utf-8", "replace"), keep_blank_values=True))


def card_digits(form: Mapping[str, str]) -> str:
    """The card number typed, spaces and dashes left out."""
    return "".join(c for c in form.get("card_number", "") if c not in " -")


def html_reply(status: int, text: str) -> Reply:
    return status, text.encode(), {"Content-Type": "text/html; charset=utf-8", **_NO_STORE}


def see_other(url: str) -> Reply:
    """The page's redirect back to the shop (303: the browser GETs it)."""
    return 303, b"", {"Location": url, **_NO_STORE}


_NO_STORE = {"Cache-Control": "no-store"}
_STYLE = (
    "body{font-family:sans-serif;background:#f4f5f7;margin:0;padding:40px 16px;color:#1d2330}"
    "main{max-width:420px;margin:0 auto;background:#fff;border-radius:12px;padding:28px;"
    "box-shadow:0 2px 12px rgba(0,0,0,.08)}"
    "h1{font-size:20px;margin:0 0 16px}.amount{font-size:28px;font-weight:bold;margin:8px 0}"
    "label{display:block;margin:20px 0 6px;font-size:14px}"
    "input{width:100%;box-sizing:border-box;font-size:18px;padding:10px;"
    "border:1px solid #b8bfcc;border-radius:6px}"
    ".alert{background:#fdecea;color:#a01919;padding:10px;border-radius:6px}"
    ".buttons{display:flex;gap:12px;margin-top:20px}"
    "button{font-size:16px;padding:10px 20px;border-radius:6px;border:1px solid #b8bfcc;"
    "background:#fff;cursor:pointer}button.pay{background:#1d6fe0;color:#fff;border-color:#1d6fe0}"
    ".note{font-size:13px;color:#5b6475}"
)


def _page(provider: str, title: str, content: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<link rel='icon' href='data:,'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<main data-testid='provider-page' data-provider='{html.escape(provider)}'>"
        f"{content}</main></body></html>"
    )


def card_page(
    *,
    provider: str,
    heading: str,
    amount: str,
    description: str,
    action: str,
    card: str = "",
    error: str | None = None,
    error_code: str | None = None,
    can_cancel: bool = True,
) -> str:
    """The provider's hosted card form: the amount, the description, a card number,
    "Pay" and (``can_cancel``) "Cancel"; ``error``: what went wrong with the last try."""
    alert = (
        f"<p class='alert' role='alert' data-testid='provider-error'"
        f" data-error-code='{html.escape(error_code or 'error')}'>{html.escape(error)}</p>"
        if error
        else ""
    )
    cancel = (
        "<button type='submit' name='action' value='cancel' formnovalidate"
        " data-testid='provider-cancel'>Cancel</button>"
        if can_cancel
        else ""
    )
    return _page(
        provider,
        f"{heading}: {amount}",
        f"<h1>{html.escape(heading)}</h1>"
        f"<p data-testid='provider-description'>{html.escape(description)}</p>"
        f"<p class='amount' data-testid='provider-amount'>{html.escape(amount)}</p>"
        f"{alert}"
        f"<form method='post' action='{html.escape(action)}' data-testid='provider-card-form'>"
        "<label for='card_number'>Card number</label>"
        "<input id='card_number' name='card_number' data-testid='provider-card-number'"
        " inputmode='numeric' autocomplete='cc-number' required"
        f" value='{html.escape(card)}'>"
        "<p class='note'>Test cards: 4242 4242 4242 4242 pays, 4000 0000 0000 0002 is"
        " declined.</p>"
        "<div class='buttons'><button type='submit' name='action' value='pay' class='pay'"
        f" data-testid='provider-pay'>Pay</button>{cancel}</div></form>",
    )


def closed_page(*, provider: str, heading: str, message: str, back_url: str | None) -> str:
    """The card page of a payment that is no longer open (paid, canceled, expired) or
    that the provider does not know."""
    back = (
        f"<p><a href='{html.escape(back_url)}' data-testid='provider-back'>Back to the shop</a></p>"
        if back_url
        else ""
    )
    return _page(
        provider,
        heading,
        f"<h1>{html.escape(heading)}</h1>"
        f"<p data-testid='provider-closed'>{html.escape(message)}</p>{back}",
    )
