"""Which pages a stream reads, and fetching them in order with bounded concurrency.

``Paging`` turns a stream's ``pagination`` into requests: the first, then either every
remaining one at once (``limit_offset`` with ``total_path``, ``page_number`` with
``total_pages_path``) or each from the page before it (no total, ``cursor``,
``link_header``, ``next_url``). Without a total, paging stops at an empty page or a
missing next token; ``max_pages`` bounds every kind.

``fetch_pages`` yields pages in order. Planned requests run ``concurrency`` at a time in a
sliding window (the next is sent as soon as the oldest is handed over); chained requests
send the next page's request before the current page is handed over, so its fetch overlaps
the decoding of the current one. At most ``concurrency`` responses are held at once.
"""
from __future__ import annotations

import re
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from ...errors import DataError
from .config import CursorPaging, HttpStream, LimitOffset, LinkHeader, NextUrl, PageNumber
from .decode import Page

_LINK = re.compile(r'<([^>]*)>\s*((?:;\s*[^;,]*)*)')
_REL_NEXT = re.compile(r'rel\s*=\s*"?([^";,]*)"?', re.IGNORECASE)


@dataclass(frozen=True)
class Request:
    """One page to fetch (``index`` counts from 1)."""

    index: int
    url: str


def with_params(url: str, params: dict[str, str]) -> str:
    """``url`` with ``params`` set in its query string (replacing same-named ones)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k not in params]
    query += list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def next_link(header: str | None) -> str | None:
    """The ``rel="next"`` target of an RFC 8288 ``Link`` header."""
    for target, attrs in _LINK.findall(header or ""):
        for rel in _REL_NEXT.findall(attrs):
            if "next" in rel.lower().split():
                return target
    return None


def _count(value: Any, what: str, page: Page) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
        raise DataError(f"{page.where()}: {what} is {value!r}, not a count")
    return int(value)


class Paging:
    """The requests of one read of a stream.

    ``endpoint`` is the URL with every fixed parameter; ``follow_params`` are added to
    URLs the server hands back (``next_url``, ``link_header``) when missing (credentials).
    """

    def __init__(self, stream: HttpStream, endpoint: str, follow_params: dict[str, str]) -> None:
        self.p = stream.pagination
        self.endpoint, self.follow_params = endpoint, follow_params
        self.max_pages = self.p.max_pages

    def first(self) -> Request:
        p = self.p
        if isinstance(p, LimitOffset):
            return Request(1, self._offset_url(p.start))
        if isinstance(p, PageNumber):
            return Request(1, self._page_url(p.start))
        return Request(1, self.endpoint)

    def _offset_url(self, offset: int) -> str:
        p = self.p
        return with_params(self.endpoint, {p.limit_param: str(p.limit),
                                           p.offset_param: str(offset)})

    def _page_url(self, number: int) -> str:
        p = self.p
        params = {p.page_param: str(number)}
        if p.page_size_param:
            params[p.page_size_param] = str(p.page_size)
        return with_params(self.endpoint, params)

    def planned(self, first: Page) -> list[Request] | None:
        """Every request after ``first`` when the first page gives the total, else None."""
        p = self.p
        if isinstance(p, LimitOffset) and p.total_path:
            total = _count(first.value(p.total_path), f"total_path {p.total_path!r}", first)
            urls = [self._offset_url(o) for o in range(p.start + p.limit, total, p.limit)]
        elif isinstance(p, PageNumber) and p.total_pages_path:
            what = f"total_pages_path {p.total_pages_path!r}"
            pages = _count(first.value(p.total_pages_path), what, first)
            urls = [self._page_url(n) for n in range(p.start + 1, p.start + pages)]
        else:
            return None
        limit = len(urls) if self.max_pages is None else max(0, self.max_pages - 1)
        return [Request(i + 2, url) for i, url in enumerate(urls[:limit])]

    def after(self, page: Page, request: Request) -> Request | None:
        """The request following ``page`` (None: the end)."""
        if page.empty or (self.max_pages is not None and request.index >= self.max_pages):
            return None
        p, index = self.p, request.index + 1
        if isinstance(p, LimitOffset):
            return Request(index, self._offset_url(p.start + p.limit * request.index))
        if isinstance(p, PageNumber):
            return Request(index, self._page_url(p.start + request.index))
        if isinstance(p, CursorPaging):
            token = page.value(p.cursor_path)
            if token is None or token == "" or token is False:
                return None
            return Request(index, with_params(self.endpoint, {p.cursor_param: str(token)}))
        if isinstance(p, (LinkHeader, NextUrl)):
            target = (next_link(page.headers.get("Link")) if isinstance(p, LinkHeader)
                      else page.value(p.next_url_path))
            if not target:
                return None
            if not isinstance(target, str):
                raise DataError(f"{page.where()}: next_url_path gives {target!r}, not a URL")
            url = urljoin(request.url, target)
            missing = {k: v for k, v in self.follow_params.items()
                       if k not in dict(parse_qsl(urlsplit(url).query))}
            return Request(index, with_params(url, missing) if missing else url)
        return None


def fetch_pages(paging: Paging, fetch: Callable[[Request], Page], concurrency: int,
                pool: ThreadPoolExecutor) -> Iterator[Page]:
    """The pages of one read, in order (see the module docstring)."""
    request = paging.first()
    page = pool.submit(fetch, request).result()
    planned = None if page.empty else paging.planned(page)
    window: deque[Future] = deque()
    try:
        if planned is None:
            while True:
                nxt = paging.after(page, request)
                if nxt is not None:
                    window.append(pool.submit(fetch, nxt))
                yield page
                if not window:
                    return
                page, request = window.popleft().result(), nxt
        todo = iter(planned)
        for req in todo:
            window.append(pool.submit(fetch, req))
            if len(window) >= concurrency:
                break
        yield page
        while window:
            page = window.popleft().result()
            if page.empty:
                return
            nxt = next(todo, None)
            if nxt is not None:
                window.append(pool.submit(fetch, nxt))
            yield page
    finally:
        for fut in window:
            fut.cancel()
