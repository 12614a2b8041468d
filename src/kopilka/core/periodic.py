"""The clocks ``kopilka serve`` runs beside the API (fiscal receipts, webhooks, e-mail,
subscriber charging): each a daemon thread that does its work every few seconds until
the server stops, and never dies of an error (it is logged, and tried again next time)."""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)


class Periodic:
    """Call ``tick`` every ``every_seconds`` until ``stop``. When ``more(result)`` says a
    full batch was done (more is waiting), ``tick`` runs again at once."""

    name = "kopilka-clock"
    what = "the clock"  # for the log: "the mail clock failed; it tries again"
    join_seconds = 10.0  # how long ``stop`` waits for a tick under way

    def __init__(self, every_seconds: float) -> None:
        assert every_seconds > 0
        self.every = every_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.join_seconds)

    def tick(self) -> Any:
        raise NotImplementedError

    def more(self, result: Any) -> bool:
        return False

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                while self.more(self.tick()) and not self._stop.is_set():
                    pass
            except Exception:
                log.exception("%s failed; it tries again", self.what)
