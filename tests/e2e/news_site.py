"""A small Vietnamese news site on 127.0.0.1 for the web tests, counting every request it answers.

It has what real outlets have and a fetcher must cope with: a home page announcing its RSS feed, a
sitemap, a robots.txt disallowing a path, ETag and Last-Modified on every page and feed (304 on a
conditional request that matches), a slow page, a page that always fails with 500, a page gone (404),
a redirect chain, an article reachable under two URLs (its AMP copy names the original as canonical),
and a page in English. The article pages are written around the bundled articles' text.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

from tests.news_pages import NewsArticle, bundled_articles, render

SLOW_SECONDS = 4.0
LAST_MODIFIED = formatdate(1_700_000_000, usegmt=True)
ENGLISH = NewsArticle("english", "Province reports party membership figures", "2023-09-29", [
    ("The provincial party organisation reported its results for the first nine months of the year at a "
    "conference held on Friday, with officials from every district taking part in the discussion."),
    ("Officials said that the number of members had grown steadily, and that training for new members would "
    "continue in the last quarter, with a focus on young people in the rural districts of the province."),
])


@dataclass(frozen=True)
class Request:
    """One request the site answered."""

    path: str
    status: int
    if_none_match: str | None
    if_modified_since: str | None
    user_agent: str | None

    @property
    def conditional(self) -> bool:
        return bool(self.if_none_match or self.if_modified_since)


class NewsSite:
    """The site, served from a thread; `url(path)` is a page's address, `requests` what was asked."""

    def __init__(self, corpus: Path) -> None:
        self.articles = bundled_articles(corpus)
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._in_flight = 0  # requests being answered (a slow page is recorded only when it has been)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.routes: dict[str, tuple[str, bytes]] = {}

    # The article behind each URL: which the tests expect indexed and which skipped.
    @property
    def plain(self) -> NewsArticle:  # /thoi-su/bai-0.html
        return self.articles[0]

    @property
    def redirected(self) -> NewsArticle:  # /tin-cu/bai-1 -> /chuyen/bai-1 -> /xa-hoi/bai-1.html
        return self.articles[1]

    @property
    def disallowed(self) -> NewsArticle:  # /noi-bo/bai-2.html, disallowed by robots.txt
        return self.articles[2]

    @property
    def slow(self) -> NewsArticle:  # /cham/bai-3.html, slower than the test's timeout
        return self.articles[3]

    @property
    def twice(self) -> NewsArticle:  # /thoi-su/bai-4.html and its AMP copy /amp/bai-4.html
        return self.articles[4]

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def __enter__(self) -> Self:
        self._build_routes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def settled(self, timeout: float = 2 * SLOW_SECONDS) -> int:
        """The number of requests recorded once none is still being answered (an earlier test's slow
        page would otherwise be recorded during the next test)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self._in_flight == 0 or time.monotonic() > deadline:
                    return len(self.requests)
            time.sleep(0.05)

    def requests_since(self, start: int) -> list[Request]:
        with self._lock:
            return list(self.requests[start:])

    def _build_routes(self) -> None:
        html = "text/html; charset=utf-8"
        pages = {
            "/thoi-su/bai-0.html": (self.plain, "bao-dien-tu", None),
            "/xa-hoi/bai-1.html": (self.redirected, "cong-thong-tin", None),
            "/noi-bo/bai-2.html": (self.disallowed, "bao-dien-tu", None),
            "/cham/bai-3.html": (self.slow, "tap-chi", None),
            "/thoi-su/bai-4.html": (self.twice, "bao-dien-tu", None),
            "/amp/bai-4.html": (self.twice, "tap-chi", "/thoi-su/bai-4.html"),
            "/en/report.html": (ENGLISH, "tap-chi", None),
        }
        for path, (article, layout, canonical) in pages.items():
            lang = "en" if article is ENGLISH else "vi"
            page = render(article, layout, self.url(path), lang=lang, canonical=self.url(canonical or path))
            self.routes[path] = (html, page.encode("utf-8"))
        feed_items = ["/thoi-su/bai-0.html", "/tin-cu/bai-1", "/noi-bo/bai-2.html", "/cham/bai-3.html",
                      "/thoi-su/bai-4.html?utm_source=rss&utm_medium=feed", "/loi/bai-loi.html",
                      "/thoi-su/da-go.html", "/en/report.html"]
        items = "".join(f"<item><title>Tin {i}</title><link>{self.url(p).replace('&', '&amp;')}</link>"
                        f"<guid>{self.url(p).replace('&', '&amp;')}</guid><pubDate>{LAST_MODIFIED}</pubDate></item>"
                        for i, p in enumerate(feed_items))
        rss = (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Báo Ấp Bắc - Tin mới'
               f'</title><link>{self.base}/</link><description>Tin mới nhất</description>{items}</channel></rss>')
        self.routes["/rss/tin-moi.rss"] = ("application/rss+xml; charset=utf-8", rss.encode("utf-8"))
        sitemap = ('<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                   + "".join(f"<url><loc>{self.url(p)}</loc><lastmod>2023-09-29</lastmod></url>"
                             for p in ("/amp/bai-4.html", "/thoi-su/bai-0.html")) + "</urlset>")
        self.routes["/sitemap.xml"] = ("application/xml", sitemap.encode("utf-8"))
        robots = f"User-agent: *\nDisallow: /noi-bo/\n\nSitemap: {self.url('/sitemap.xml')}\n"
        self.routes["/robots.txt"] = ("text/plain", robots.encode("utf-8"))
        home = ('<!DOCTYPE html><html lang="vi"><head><meta charset="utf-8"><title>Báo Ấp Bắc</title>'
                '<link rel="alternate" type="application/rss+xml" title="Tin mới" href="/rss/tin-moi.rss">'
                '</head><body><h1>Báo Ấp Bắc</h1><ul>'
                + "".join(f'<li><a href="{p}">{a.title}</a></li>' for p, (a, _, _) in pages.items())
                + "</ul></body></html>")
        self.routes["/"] = (html, home.encode("utf-8"))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return

            def do_GET(self) -> None:
                with site._lock:
                    site._in_flight += 1
                try:
                    status = self._answer()
                except BaseException:
                    with site._lock:
                        site._in_flight -= 1
                    raise
                with site._lock:
                    site._in_flight -= 1
                    site.requests.append(Request(self.path, status, self.headers.get("If-None-Match"),
                                                 self.headers.get("If-Modified-Since"), self.headers.get("User-Agent")))

            def _answer(self) -> int:
                path = self.path.split("?", 1)[0]
                redirects = {"/tin-cu/bai-1": "/chuyen/bai-1", "/chuyen/bai-1": "/xa-hoi/bai-1.html"}
                if path in redirects:
                    return self._send(301 if path.startswith("/tin-cu") else 302, b"", "text/plain",
                                      {"Location": redirects[path]})
                if path == "/loi/bai-loi.html":
                    return self._send(500, b"Internal Server Error", "text/plain", {})
                if path == "/cham/bai-3.html":
                    time.sleep(SLOW_SECONDS)
                if path not in site.routes:
                    return self._send(404, "Không tìm thấy trang".encode(), "text/plain; charset=utf-8", {})
                content_type, body = site.routes[path]
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") == etag or (
                        not self.headers.get("If-None-Match") and self.headers.get("If-Modified-Since") == LAST_MODIFIED):
                    return self._send(304, b"", content_type, {"ETag": etag, "Last-Modified": LAST_MODIFIED})
                return self._send(200, body, content_type, {"ETag": etag, "Last-Modified": LAST_MODIFIED})

            def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str]) -> int:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    if status != 304:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (the slow page)
                    pass
                return status

        return Handler
