"""The web pieces one at a time: the fetcher's safety and politeness rules over httpx's MockTransport,
feed and sitemap reading, canonical URLs, extraction refusals, and de-duplication in the sync."""

from __future__ import annotations

import json

import httpx
import pytest

from index.documents import RawDocument, Skipped
from index.errors import HoidapError
from index.indexer import SyncSummary
from index.web.extraction import (
    ExtractionError,
    canonical_url,
    extract_page,
    normalize_url,
)
from index.web.feeds import FeedFormatError, discover_feeds, kind_of, read_listing
from index.web.fetching import Fetcher, FetchError, FetchPolicy
from index.web.registry import FeedRegistry
from index.web.syncing import WebSource, article_id_for
from tests.news_pages import NewsArticle, render

ARTICLE = NewsArticle("bai", "Tiền Giang kết nạp 1.513 đảng viên mới", "2023-09-29", [
    ("Sáng ngày 29/9, Ban Tổ chức Tỉnh ủy đã tổ chức Hội nghị sơ kết công tác xây dựng Đảng 9 tháng đầu năm, "
    "triển khai nhiệm vụ 3 tháng cuối năm 2023."),
    ("Về phát triển Đảng viên, đã kết nạp mới được 1.513 đồng chí, nâng tổng số đảng viên toàn Đảng bộ tỉnh lên "
    "74.127 đồng chí. Đến tháng 9 năm 2023, toàn Đảng bộ tỉnh có 817 tổ chức cơ sở Đảng, trong đó Đảng bộ cơ sở "
    "là 301, chi bộ cơ sở là 516."),
])


def fetcher(handler, **policy) -> tuple[Fetcher, list[float]]:
    pauses: list[float] = []
    options = {"allow_private": True, "host_delay": 0, "backoff": 0.5, **policy}
    return Fetcher(FetchPolicy(**options), transport=httpx.MockTransport(handler), sleep=pauses.append), pauses


def site(routes: dict[str, httpx.Response | list[httpx.Response]]):
    """A handler answering from `routes` (a list is answered in turn); robots.txt is 404 unless routed."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = routes.get(request.url.path, httpx.Response(404))
        return answer.pop(0) if isinstance(answer, list) else answer

    return handle, seen


@pytest.mark.parametrize("url", ["http://127.0.0.1/", "http://10.1.2.3/a", "http://169.254.169.254/latest/meta-data",
                                 "http://[::1]/", "http://[::ffff:192.168.1.1]/", "http://localhost:8080/", "http://0.0.0.0/"])
def test_non_public_addresses_are_refused_before_any_request(url: str) -> None:
    handler, seen = site({})
    web, _ = fetcher(handler, allow_private=False)
    with pytest.raises(FetchError, match="non-public address"):
        web.get(url)
    assert seen == []


def test_only_http_and_https() -> None:
    web, _ = fetcher(site({})[0])
    for url in ("file:///etc/passwd", "ftp://example.org/a", "gopher://x/"):
        with pytest.raises(FetchError, match="not an http"):
            web.get(url)


def test_a_redirect_to_a_private_address_is_refused() -> None:
    handler, seen = site({"/a": httpx.Response(302, headers={"Location": "http://192.168.0.1/admin"})})
    web, _ = fetcher(handler, allow_private=False)
    with pytest.raises(FetchError, match="192.168.0.1"):  # 93.184.215.14 is public: only the redirect is refused
        web.get("http://93.184.215.14/a")
    assert [r.url.host for r in seen] == ["93.184.215.14", "93.184.215.14"]  # robots.txt and /a only


def test_redirects_are_bounded_and_loops_named() -> None:
    loop = {"/a": httpx.Response(301, headers={"Location": "/b"}), "/b": httpx.Response(301, headers={"Location": "/a"})}
    web, _ = fetcher(site(loop)[0])
    with pytest.raises(FetchError, match="redirect loop"):
        web.get("http://news.example/a")
    chain = {f"/{i}": httpx.Response(302, headers={"Location": f"/{i + 1}"}) for i in range(10)}
    web, _ = fetcher(site(chain)[0], max_redirects=3)
    with pytest.raises(FetchError, match="more than 3 redirects"):
        web.get("http://news.example/0")


def test_retries_on_503_honour_retry_after_then_give_up_with_the_status() -> None:
    handler, _ = site({"/a": [httpx.Response(503, headers={"Retry-After": "7"}), httpx.Response(429),
                                 httpx.Response(200, text="<p>ok</p>", headers={"Content-Type": "text/html"})]})
    web, pauses = fetcher(handler, retries=2)
    assert web.get("http://news.example/a").status == 200
    assert pauses == [7.0, 1.0]  # Retry-After, then back-off 0.5 * 2**1
    handler, _ = site({"/b": httpx.Response(500)})
    web, _ = fetcher(handler, retries=1)
    with pytest.raises(FetchError, match="HTTP 500"):
        web.get("http://news.example/b")


def test_size_cap_and_client_errors_are_reasons() -> None:
    big = httpx.Response(200, content=b"x" * 20_000, headers={"Content-Type": "text/html"})
    handler, _ = site({"/big": big, "/gone": httpx.Response(410)})
    web, _ = fetcher(handler, max_bytes=10_000)
    with pytest.raises(FetchError, match="larger than 0.01 MB"):
        web.get("http://news.example/big")
    with pytest.raises(FetchError, match="HTTP 410 gone"):
        web.get("http://news.example/gone")


def test_robots_txt_is_obeyed_and_an_unreachable_one_disallows_all() -> None:
    robots = httpx.Response(200, text="User-agent: *\nDisallow: /private/\nSitemap: http://news.example/s.xml\n")
    handler, seen = site({"/robots.txt": robots, "/ok": httpx.Response(200, text="hi")})
    web, _ = fetcher(handler)
    assert web.get("http://news.example/ok").status == 200
    with pytest.raises(FetchError, match="disallowed by robots.txt"):
        web.get("http://news.example/private/x")
    assert web.sitemaps_of("http://news.example/") == ["http://news.example/s.xml"]
    assert [r.url.path for r in seen] == ["/robots.txt", "/ok"]
    assert all("hoidap" in r.headers["user-agent"] for r in seen)
    web, _ = fetcher(site({"/robots.txt": httpx.Response(503)})[0], retries=0)
    with pytest.raises(FetchError, match="disallowed by robots.txt"):
        web.get("http://news.example/ok")


def test_conditional_get_sends_the_validators_and_reads_304() -> None:
    handler, seen = site({"/feed": httpx.Response(304, headers={"ETag": '"v1"'})})
    web, _ = fetcher(handler)
    fetched = web.get("http://news.example/feed", etag='"v1"', last_modified="Tue, 14 Nov 2023 22:13:20 GMT")
    assert fetched.not_modified and fetched.body == b""
    assert seen[-1].headers["if-none-match"] == '"v1"'
    assert seen[-1].headers["if-modified-since"] == "Tue, 14 Nov 2023 22:13:20 GMT"


def test_feeds_sitemaps_and_discovery() -> None:
    rss = ('<?xml version="1.0"?><rss version="2.0"><channel><title>Tin mới</title>'
           '<item><link>/a.html</link></item><item><link>http://news.example/b.html</link></item></channel></rss>')
    atom = ('<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>Atom</title>'
            '<entry><link href="http://news.example/c.html"/><id>c</id><title>c</title></entry></feed>')
    json_feed = json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "J",
                            "items": [{"id": "1", "url": "/d.html"}]})
    index = ('<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
             '<sitemap><loc>http://news.example/s1.xml</loc></sitemap></sitemapindex>')
    base = "http://news.example/feed"
    assert read_listing(rss.encode(), "application/rss+xml", base).pages == [
        "http://news.example/a.html", "http://news.example/b.html"]
    assert read_listing(atom.encode(), "", base).pages == ["http://news.example/c.html"]
    assert read_listing(json_feed.encode(), "application/feed+json", base).pages == ["http://news.example/d.html"]
    assert read_listing(index.encode(), "", base).sitemaps == ["http://news.example/s1.xml"]
    assert kind_of(b"<!DOCTYPE html><html></html>", "text/html") == "page"
    with pytest.raises(FeedFormatError, match="malformed"):
        read_listing(b"<rss><channel><item><link>", "", base)
    with pytest.raises(FeedFormatError, match="malformed sitemap"):
        read_listing(b'<?xml version="1.0"?><urlset><url><loc>x</loc>', "", base)
    page = ('<html><head><link rel="alternate" type="application/rss+xml" href="/rss.xml">'
            '<link rel="alternate" hreflang="en" href="/en/"><link rel="stylesheet" href="/a.css"></head></html>')
    assert discover_feeds(page, "http://news.example/") == ["http://news.example/rss.xml"]


def test_a_page_may_not_claim_another_sites_canonical_url() -> None:
    fetched = "http://www.baoapbac.example/tin/a.html?utm_source=rss&id=3#top"
    assert canonical_url("https://other.example/real.html", fetched) == "http://www.baoapbac.example/tin/a.html?id=3"
    assert canonical_url("/amp-original.html", fetched) == "http://www.baoapbac.example/amp-original.html"
    assert canonical_url("https://baoapbac.example/a.html", fetched) == "https://baoapbac.example/a.html"
    assert normalize_url("HTTP://News.Example") == "http://news.example/"


def test_extraction_refuses_empty_and_foreign_pages() -> None:
    teaser = NewsArticle("t", "Bài dành cho thành viên", "2023-01-01", ["Đăng ký để đọc toàn bộ bài viết."])
    with pytest.raises(ExtractionError, match="no article text"):
        extract_page(render(teaser, "bao-dien-tu", "http://x.example/t"), "http://x.example/t", doc_id="t")
    document = extract_page(render(ARTICLE, "cong-thong-tin", "http://x.example/a"), "http://x.example/a", doc_id="a")
    assert document.title == ARTICLE.title and document.date == "2023-09-29"
    assert "74.127" in document.text and "Tin mới" not in document.text


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[list[RawDocument], list[Skipped]]] = []

    def __call__(self, documents: list[RawDocument], skipped: list[Skipped]) -> SyncSummary:
        self.calls.append((documents, skipped))
        return SyncSummary(added=[d.doc_id for d in documents], skipped=skipped)


def test_the_same_text_under_another_url_is_indexed_once(tmp_path) -> None:
    html = render(ARTICLE, "bao-dien-tu", "http://news.example/a.html")
    no_canonical = html.replace('<link rel="canonical" href="http://news.example/a.html">', "")
    handler, _ = site({"/a.html": httpx.Response(200, text=html, headers={"Content-Type": "text/html"}),
                       "/print/a": httpx.Response(200, text=no_canonical, headers={"Content-Type": "text/html"}),
                       "/a-amp.html": httpx.Response(200, text=html, headers={"Content-Type": "text/html"})})
    web, _ = fetcher(handler)
    recorder = _Recorder()
    registry = FeedRegistry.open(tmp_path)
    source = WebSource(web, registry, recorder)
    source.index_pages(["http://news.example/a.html", "http://news.example/a-amp.html", "http://news.example/print/a"])
    documents, skipped = recorder.calls[-1]
    assert [d.doc_id for d in documents] == [article_id_for("http://news.example/a.html")]
    assert documents[0].url == "http://news.example/a.html"
    reasons = {s.path: s.reason for s in skipped}
    assert reasons["http://news.example/a-amp.html"].startswith("same article as http://news.example/a.html")
    assert reasons["http://news.example/print/a"].startswith("same text as article")
    registry.close()


def test_a_cited_web_article_links_its_title_in_telegram_and_prints_its_link_in_the_terminal() -> None:
    from rich.console import Console

    from bot.telegram.formatting import to_telegram_html
    from bot.terminal import print_answer
    from retrieval.types import Answer, Source

    def answer(url: str) -> Answer:
        return Answer("Có 74.127 đảng viên [1].", True, [Source(1, "a", "Hội nghị <sơ kết>", "2023-09-29", "Báo Ấp Bắc",
                                                                "74.127 đồng chí", 0, 15, 0.9, url=url)])

    markup = to_telegram_html(answer('http://news.example/a.html?x=1&y="2"'))
    assert '<a href="http://news.example/a.html?x=1&amp;y=&quot;2&quot;"><b>Hội nghị &lt;sơ kết&gt;</b></a>' in markup
    assert "<a " not in to_telegram_html(answer("javascript:alert(1)"))  # only http(s) becomes a link
    console = Console(record=True, width=200)
    print_answer(console, answer("http://news.example/a.html"), "vi")
    assert "http://news.example/a.html" in console.export_text()


def test_sync_intervals() -> None:
    from bot.settings import parse_interval

    assert [parse_interval(text) for text in ("30m", "2h", "1h30m", "90s")] == [1800.0, 7200.0, 5400.0, 90.0]
    for text in ("", "soon", "30", "10s", "m"):
        with pytest.raises(ValueError):
            parse_interval(text)


def test_the_connection_itself_refuses_private_addresses_whatever_dns_said_before() -> None:
    from index.web.fetching import AddressRefusedError, _PublicOnlyBackend

    for host in ("localhost", "127.0.0.1", "10.0.0.8", "::1"):
        with pytest.raises(AddressRefusedError):
            _PublicOnlyBackend().connect_tcp(host, 80, timeout=1)


def test_a_home_page_without_feed_links_is_followed_through_its_robots_sitemap_or_a_common_location(tmp_path) -> None:
    home = httpx.Response(200, text="<html><body><h1>Báo</h1></body></html>", headers={"Content-Type": "text/html"})
    sitemap = httpx.Response(200, text='<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                                      '<url><loc>http://news.example/a.html</loc></url></urlset>')
    robots = httpx.Response(200, text="User-agent: *\nSitemap: http://news.example/maps/tin.xml\n")
    rss = httpx.Response(200, text='<?xml version="1.0"?><rss version="2.0"><channel><title>RSS</title>'
                                  '<item><link>http://news.example/b.html</link></item></channel></rss>')
    registry = FeedRegistry.open(tmp_path / "one")
    web, _ = fetcher(site({"/": home, "/robots.txt": robots, "/maps/tin.xml": sitemap})[0])
    followed = WebSource(web, registry, _Recorder()).add_source("http://news.example/")
    assert followed.followed == [("http://news.example/maps/tin.xml", "sitemap", None)]
    registry.close()
    registry = FeedRegistry.open(tmp_path / "two")
    web, _ = fetcher(site({"/": home, "/feed": rss})[0])
    followed = WebSource(web, registry, _Recorder()).add_source("http://news.example/")
    assert followed.followed == [("http://news.example/feed", "feed", "RSS")]
    registry.close()
    registry = FeedRegistry.open(tmp_path / "three")
    web, _ = fetcher(site({"/": home})[0])
    with pytest.raises(HoidapError, match="announces no feed"):
        WebSource(web, registry, _Recorder()).add_source("http://news.example/")
    registry.close()


def test_sync_every_reports_a_failed_round_and_goes_on(capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli.feeds import keep_syncing
    from index.errors import HoidapError

    outcomes = iter([HoidapError("the site is down", vi="trang không truy cập được"), None, None])
    calls: list[str] = []
    pauses: list[float] = []

    def sync_once() -> None:
        calls.append("sync")
        outcome = next(outcomes)
        if outcome is not None:
            raise outcome

    keep_syncing(sync_once, 1800.0, "30m", sleep=pauses.append, rounds=3)
    assert calls == ["sync", "sync", "sync"] and pauses == [1800.0, 1800.0, 1800.0]
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("lỗi: trang không truy cập được") == 1 and err.count("lần đồng bộ tiếp theo sau 30m") == 3
