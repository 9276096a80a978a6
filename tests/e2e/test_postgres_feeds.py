"""With HOIDAP_DATABASE_URL the followed feeds live in the database too: a feed added on one machine is
listed and removed from another (the real `hoidap feeds` CLI, the local news site, real PostgreSQL)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.conftest import make_settings, run_cli
from tests.e2e.news_site import NewsSite
from tests.e2e.test_web import FETCH_ENV, site  # noqa: F401 - the local news site fixture

pytestmark = pytest.mark.e2e


def test_feeds_followed_on_one_machine_are_seen_on_another(site: NewsSite, tmp_path: Path,  # noqa: F811
                                                           models_dir: Path, postgres_cluster) -> None:
    url = postgres_cluster.create_database(f"feeds_{uuid.uuid4().hex[:8]}")
    one, two = (make_settings(tmp_path / name / "data", models_dir) for name in ("one", "two"))
    for settings in (one, two):
        settings.data_dir.mkdir(parents=True)
    added = run_cli(["feeds", "add", site.url("/sitemap.xml")], one, HOIDAP_DATABASE_URL=url, **FETCH_ENV)
    assert added.returncode == 0, added.stderr
    listed = run_cli(["feeds", "list"], two, HOIDAP_DATABASE_URL=url)
    assert listed.returncode == 0 and site.url("/sitemap.xml") in listed.stdout, listed.stderr
    assert "Chưa theo dõi nguồn tin nào" in run_cli(["feeds", "list"], two).stdout  # its own data dir has none
    removed = run_cli(["feeds", "remove", site.url("/sitemap.xml")], two, HOIDAP_DATABASE_URL=url)
    assert removed.returncode == 0 and "đã bỏ theo dõi" in removed.stdout, removed.stderr
    assert "Chưa theo dõi nguồn tin nào" in run_cli(["feeds", "list"], one, HOIDAP_DATABASE_URL=url).stdout
    assert not (one.data_dir / "web.sqlite3").exists()
