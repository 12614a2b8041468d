"""Offset paging of a table: ``?page=3`` in the URL, "51-75 of 230" and links under it.

A route reads the page asked for, fetches that slice with ``offset`` and ``limit`` and
the total, and hands ``with_total(total)`` to the ``ui.pager`` macro. The links keep every
other query argument (search, filters), so paging never loses what is shown.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import urlencode

from starlette.requests import Request

PER_PAGE = 25
# Beyond this a page number is nonsense (and an offset that large is a slow query).
MAX_PAGE = 100_000


@dataclass(frozen=True, slots=True)
class Paging:
    page: int
    per_page: int = PER_PAGE
    total: int = 0
    path: str = ""
    query: tuple[tuple[str, str], ...] = ()
    param: str = "page"

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    @property
    def limit(self) -> int:
        return self.per_page

    @property
    def first(self) -> int:
        """The number of the first row shown (1-based); 0 when nothing is shown."""
        return self.offset + 1 if self.offset < self.total else 0

    @property
    def last(self) -> int:
        return min(self.offset + self.per_page, self.total) if self.first else 0

    @property
    def last_page(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def prev_url(self) -> str | None:
        if self.page <= 1:
            return None
        return self.url(min(self.page - 1, self.last_page))

    @property
    def next_url(self) -> str | None:
        return self.url(self.page + 1) if self.page < self.last_page else None

    def url(self, page: int) -> str:
        """This list at ``page``, every other query argument kept."""
        args = [(k, v) for k, v in self.query if k != self.param]
        if page > 1:
            args.append((self.param, str(page)))
        return self.path + (f"?{urlencode(args)}" if args else "")

    def with_total(self, total: int) -> Paging:
        return replace(self, total=total)


def paging_of(request: Request, *, per_page: int = PER_PAGE, param: str = "page") -> Paging:
    """The page a request asks for (``?page=``, 1 when missing or not a number)."""
    raw = request.query_params.get(param, "")
    page = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else 1
    return Paging(
        page=min(max(page, 1), MAX_PAGE),
        per_page=per_page,
        path=request.url.path,
        query=tuple(request.query_params.multi_items()),
        param=param,
    )
