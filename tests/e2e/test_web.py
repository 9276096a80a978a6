"""Articles from the web, end to end: the real CLI against a local news site on 127.0.0.1.

`hoidap feeds add` follows the site (its RSS feed found from the home page) and its sitemap; `hoidap
sync` indexes exactly the articles it may and can (robots.txt, a slow page, a 500, a 404, a page in
English and a second URL of one article are skipped with their reasons); a second sync costs only
conditional requests and embeds nothing; `hoidap ask --json` cites the page's URL. Without
HOIDAP_FETCH_ALLOW_PRIVATE the same site is refused before any request reaches it.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.settings import BUNDLED_CORPUS, Settings
from index.store import IndexStore
from tests.conftest import make_settings, run_cli
from tests.e2e.news_site import NewsSite

pytestmark = pytest.mark.e2e

FETCH_ENV = {"HOIDAP_FETCH_ALLOW_PRIVATE": "true", "HOIDAP_FETCH_TIMEOUT": "1.5",
             "HOIDAP_FETCH_HOST_DELAY": "0", "HOIDAP_FETCH_RETRIES": "1"}


@pytest.fixture(scope="module")
def site() -> Iterator[NewsSite]:
    with NewsSite(BUNDLED_CORPUS) as news:
        yield news


@pytest.fixture(scope="module")
def synced(site: NewsSite, tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> dict:
    """A data dir following the site and its sitemap, after one `hoidap sync`."""
    settings = make_settings(tmp_path_factory.mktemp("web") / "data", models_dir)
    settings.data_dir.mkdir(parents=True)
    added_site = run_cli(["feeds", "add", site.url("/")], settings, **FETCH_ENV)
    added_sitemap = run_cli(["feeds", "add", site.url("/sitemap.xml")], settings, **FETCH_ENV)
    before = site.settled()
    first = run_cli(["sync"], settings, **FETCH_ENV)
    return {"settings": settings, "added_site": added_site, "added_sitemap": added_sitemap, "first": first,
            "first_requests": site.requests_since(before)}


def _indexed(settings: Settings) -> dict[str, str]:
    store = IndexStore.open(settings.index_dir)
    try:
        return {article.url: article.text for article in store.articles()}
    finally:
        store.close()


def test_feeds_add_finds_the_feed_from_the_home_page_and_follows_the_sitemap(synced: dict, site: NewsSite) -> None:
    assert synced["added_site"].returncode == 0, synced["added_site"].stderr
    assert f"đã theo dõi feed {site.url('/rss/tin-moi.rss')} (Báo Ấp Bắc - Tin mới)" in synced["added_site"].stdout
    assert synced["added_sitemap"].returncode == 0, synced["added_sitemap"].stderr
    assert f"đã theo dõi sitemap {site.url('/sitemap.xml')}" in synced["added_sitemap"].stdout
    listing = run_cli(["feeds", "list"], synced["settings"], **FETCH_ENV)
    assert listing.returncode == 0 and "tin-moi.rss" in listing.stdout and "sitemap.xml" in listing.stdout


def test_sync_indexes_exactly_the_allowed_articles_with_a_reason_for_each_other(synced: dict, site: NewsSite) -> None:
    first = synced["first"]
    assert first.returncode == 0, first.stderr
    indexed = _indexed(synced["settings"])
    assert set(indexed) == {site.url("/thoi-su/bai-0.html"), site.url("/xa-hoi/bai-1.html"),
                            site.url("/thoi-su/bai-4.html")}
    assert "74.127" in indexed[site.url("/thoi-su/bai-4.html")]
    assert "Ý kiến bạn đọc" not in indexed[site.url("/thoi-su/bai-0.html")]  # comments are not the article
    assert "Quảng cáo" not in "".join(indexed.values())
    assert "thêm 3, cập nhật 0, xoá 0" in first.stdout
    reasons = {line.split(": ", 1)[0].removeprefix("  bỏ qua "): line.split(": ", 1)[1]
               for line in first.stdout.splitlines() if line.startswith("  bỏ qua ")}
    assert reasons[site.url("/noi-bo/bai-2.html")].startswith("robots.txt không cho phép")
    assert reasons[site.url("/cham/bai-3.html")].startswith("quá thời gian chờ 1.5 giây")
    assert reasons[site.url("/loi/bai-loi.html")].startswith("lỗi HTTP 500")
    assert reasons[site.url("/thoi-su/da-go.html")].startswith("lỗi HTTP 404")
    assert reasons[site.url("/en/report.html")].startswith("trang không viết bằng tiếng Việt")
    assert reasons[site.url("/amp/bai-4.html")].startswith("cùng bài với " + site.url("/thoi-su/bai-4.html"))
    requested = [r.path for r in synced["first_requests"]]
    assert not any(path.startswith("/noi-bo/") for path in requested)  # robots.txt obeyed
    assert requested.count("/loi/bai-loi.html") == 2  # one retry on 500
    assert requested.index("/tin-cu/bai-1") < requested.index("/chuyen/bai-1") < requested.index("/xa-hoi/bai-1.html")
    assert all("hoidap" in (r.user_agent or "") for r in synced["first_requests"])


def test_second_sync_makes_only_conditional_requests_and_embeds_nothing(synced: dict, site: NewsSite) -> None:
    before = site.settled()
    second = run_cli(["sync"], synced["settings"], **FETCH_ENV)
    assert second.returncode == 0, second.stderr
    requests = site.requests_since(before)
    assert {r.path for r in requests} == {"/robots.txt", "/rss/tin-moi.rss", "/sitemap.xml"}
    assert all(r.conditional and r.status == 304 for r in requests), requests
    assert "thêm 0, cập nhật 0, xoá 0" in second.stdout and "đã nhúng 0 đoạn" in second.stdout
    assert len(_indexed(synced["settings"])) == 3


def test_ask_json_cites_the_page_url(synced: dict, site: NewsSite) -> None:
    result = run_cli(["ask", "--json", "Năm 2023 tỉnh có bao nhiêu đảng viên?"], synced["settings"])
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["found"] and "74.127" in answer["answer"]
    cited = [s for s in answer["sources"] if "74.127" in s["text"]]
    assert cited and cited[0]["url"] == site.url("/thoi-su/bai-4.html")
    terminal = run_cli(["ask", "Năm 2023 tỉnh có bao nhiêu đảng viên?"], synced["settings"])
    assert site.url("/thoi-su/bai-4.html") in terminal.stdout


def test_an_updated_article_replaces_its_old_version_and_a_vanished_item_stays(synced: dict, site: NewsSite) -> None:
    page, feed = "/thoi-su/bai-0.html", "/rss/tin-moi.rss"
    original = dict(site.routes)
    content_type, body = site.routes[page]
    site.routes[page] = (content_type, body.replace("Sáng ngày 29/10".encode(), "Chiều ngày 29/10".encode()))
    site.routes[feed] = (site.routes[feed][0], re.sub(rb"<item><title>Tin 1</title>.*?</item>", b"", site.routes[feed][1]))
    before = site.settled()
    try:
        third = run_cli(["sync"], synced["settings"], **FETCH_ENV)
    finally:
        site.routes.update(original)  # the site as the other tests know it
    assert third.returncode == 0, third.stderr
    assert "thêm 0, cập nhật 1, xoá 0" in third.stdout
    indexed = _indexed(synced["settings"])
    assert "Chiều ngày 29/10" in indexed[site.url(page)] and "Sáng ngày 29/10" not in indexed[site.url(page)]
    assert len(indexed) == 3
    answered = {r.path: r.status for r in site.requests_since(before)}
    assert answered[page] == 200 and answered["/thoi-su/bai-4.html"] == 304  # tracking parameters dropped
    assert "/tin-cu/bai-1" not in answered  # gone from the feed, and still indexed


def test_indexing_files_keeps_the_articles_from_the_web(synced: dict, site: NewsSite) -> None:
    result = run_cli(["index", str(BUNDLED_CORPUS)], synced["settings"])
    assert result.returncode == 0, result.stderr
    assert "thêm 5, cập nhật 0, xoá 0" in result.stdout
    store = IndexStore.open(synced["settings"].index_dir)
    urls = [article.url for article in store.articles()]
    store.close()
    assert len(urls) == 8 and urls.count(None) == 5 and site.url("/thoi-su/bai-4.html") in urls


def test_hoidap_index_url_indexes_a_page_under_its_canonical_url(site: NewsSite, tmp_path: Path,
                                                                 models_dir: Path) -> None:
    settings = make_settings(tmp_path / "data", models_dir)
    settings.data_dir.mkdir(parents=True)
    result = run_cli(["index", site.url("/amp/bai-4.html")], settings, **FETCH_ENV)
    assert result.returncode == 0, result.stderr
    assert "thêm 1," in result.stdout
    assert list(_indexed(settings)) == [site.url("/thoi-su/bai-4.html")]


def test_the_telegram_refresh_syncs_the_feeds_on_its_schedule(site: NewsSite, tmp_path: Path, models_dir: Path) -> None:
    import threading

    from bot.cli.serving import _start_refresh
    from bot.wiring import web_source

    settings = make_settings(tmp_path / "data", models_dir, fetch_allow_private=True, fetch_timeout=1.5,
                             fetch_host_delay=0, fetch_retries=0)
    with web_source(settings) as web:
        web.add_source(site.url("/rss/tin-moi.rss"))

    class Live:
        reloaded = threading.Event()

        def reload(self) -> None:
            self.reloaded.set()

    live, stop = Live(), threading.Event()
    _start_refresh(settings, live, 0.2, stop)
    try:
        assert live.reloaded.wait(300), "the refresh never changed the index"
    finally:
        stop.set()
    assert set(_indexed(settings)) == {site.url("/thoi-su/bai-0.html"), site.url("/xa-hoi/bai-1.html"),
                                       site.url("/thoi-su/bai-4.html")}


def test_private_addresses_are_refused_without_the_setting(site: NewsSite, tmp_path: Path, models_dir: Path) -> None:
    settings = make_settings(tmp_path / "data", models_dir)
    settings.data_dir.mkdir(parents=True)
    before = site.settled()
    added = run_cli(["feeds", "add", site.url("/")], settings)
    indexed = run_cli(["index", site.url("/thoi-su/bai-0.html")], settings)
    assert added.returncode == 1 and "từ chối" in added.stderr and "HOIDAP_FETCH_ALLOW_PRIVATE" in added.stderr
    assert indexed.returncode == 0, indexed.stderr
    assert "từ chối" in indexed.stdout and "địa chỉ không công khai 127.0.0.1" in indexed.stdout
    assert site.requests_since(before) == []  # refused before any connection


def test_telegram_admin_adds_a_page_and_others_are_refused(site: NewsSite, tmp_path: Path,
                                                           built_index_settings: Settings) -> None:
    from tests.conftest import cli_env
    from tests.e2e.botapi_server import BotApiServer
    from tests.e2e.test_telegram import TOKEN, stop, telegram_process

    admin, reader = 9001, 9002
    with BotApiServer(TOKEN) as server:
        settings = built_index_settings.model_copy(update={"data_dir": tmp_path / "data"})
        generation = built_index_settings.index_dir.resolve()
        shutil.copytree(generation, settings.data_dir / generation.name)
        (settings.data_dir / "index").symlink_to(generation.name)  # an index as hoidap leaves it: a link
        env = cli_env(settings, HOIDAP_TELEGRAM_TOKEN=TOKEN, HOIDAP_TELEGRAM_API_URL=server.base_url,
                      HOIDAP_TELEGRAM_ADMINS=str(admin), **FETCH_ENV)
        page = site.url("/thoi-su/bai-0.html")
        with telegram_process(env, tmp_path, server) as process:
            lan, minh = server.user(admin, "Lan"), server.user(reader, "Minh")
            refused = minh.wait_reply(minh.say(f"/add {page}"), timeout=60)
            refused_feeds = minh.wait_reply(minh.say("/feeds"), timeout=60)
            request = lan.say(f"/add {page}")
            done = lan.wait_reply(request, timeout=300, where=_summary_or_failure)
            feed_request = lan.say(f"/add {site.url('/rss/tin-moi.rss')}")
            feed_done = lan.wait_reply(feed_request, timeout=300, where=_summary_or_failure)
            feeds = lan.wait_reply(lan.say("/feeds"), timeout=60)
            listing = lan.wait_reply(lan.say("/sources"), timeout=60)
            stop(process)
    assert refused.text.startswith("Xin lỗi, chỉ quản trị viên") and refused_feeds.text == refused.text
    assert "thêm 1, cập nhật 0, xoá 0" in done.text and "chỉ mục: 6 bài" in done.text
    assert f"đã theo dõi feed {site.url('/rss/tin-moi.rss')}" in feed_done.text
    assert "thêm 2" in feed_done.text and "robots.txt không cho phép" in feed_done.text
    assert "Báo Ấp Bắc - Tin mới" in feeds.text and site.url("/rss/tin-moi.rss") in feeds.text
    assert "Các bài báo đã lập chỉ mục (8)" in listing.text  # the running bot answers from the new index


def _summary_or_failure(message) -> bool:
    return "giữ nguyên" in message.text or message.text.startswith("Không thêm được")


def test_feeds_remove_stops_following(site: NewsSite, tmp_path: Path, models_dir: Path) -> None:
    settings = make_settings(tmp_path / "data", models_dir)
    settings.data_dir.mkdir(parents=True)
    assert run_cli(["feeds", "add", site.url("/sitemap.xml")], settings, **FETCH_ENV).returncode == 0
    removed = run_cli(["feeds", "remove", site.url("/sitemap.xml")], settings)
    again = run_cli(["feeds", "remove", site.url("/sitemap.xml")], settings)
    listing = run_cli(["feeds", "list"], settings)
    assert removed.returncode == 0 and "đã bỏ theo dõi" in removed.stdout
    assert again.returncode == 1 and "không nằm trong danh sách theo dõi" in again.stderr
    assert "Chưa theo dõi nguồn tin nào" in listing.stdout
