"""The index never loses articles by surprise: the real CLI on a real index (issue 15).

`hoidap index PATH` adds or updates PATH's articles and keeps the others; only what vanished from a
source it came from, `hoidap remove` or `hoidap index --prune` removes an article; a mistyped path is
an error that changes nothing; a sync removing more than half of the index needs `--yes`.
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
from pathlib import Path

import pytest

from index.store import IndexStore
from tests.conftest import HOIDAP, cli_env, make_settings, run_cli

pytestmark = pytest.mark.e2e

# Short real-sounding articles: one chunk each, so every sync embeds little.
ARTICLES = {
    "cau_song_han": "Cầu sông Hàn được sửa chữa\n\nĐà Nẵng sửa cầu sông Hàn trong ba tháng, xe máy vẫn được đi qua.",
    "lua_mien_tay": "Giá lúa miền Tây tăng\n\nGiá lúa tại Cần Thơ tăng 200 đồng mỗi ký so với tuần trước.",
    "mua_ha_noi": "Hà Nội mưa lớn\n\nMưa lớn kéo dài khiến nhiều tuyến phố ở Hà Nội ngập sâu chiều qua.",
    "tau_thong_nhat": "Tàu Thống Nhất chạy thêm chuyến\n\nNgành đường sắt chạy thêm bốn đôi tàu Thống Nhất dịp Tết.",
    "truong_hoc_moi": "Khánh thành trường học mới\n\nHuyện miền núi Quảng Nam khánh thành ngôi trường mới cho 300 học sinh.",
}


def _write(folder: Path, articles: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in articles.items():
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    return folder


def _ids(settings) -> set[str]:
    store = IndexStore.open(settings.index_dir)
    try:
        return {a.article_id for a in store.articles()}
    finally:
        store.close()


@pytest.fixture
def indexed(tmp_path: Path, models_dir: Path):
    """A real index of a folder of five articles, built through the CLI."""
    settings = make_settings(tmp_path / "data", models_dir)
    folder = _write(tmp_path / "news", ARTICLES)
    built = run_cli(["index", str(folder)], settings)
    assert built.returncode == 0, built.stderr
    assert _ids(settings) == set(ARTICLES)
    return settings, folder


def test_a_mistyped_path_is_an_error_and_keeps_the_index(indexed, tmp_path: Path) -> None:
    settings, _ = indexed
    generation = settings.index_dir.resolve()
    typo = run_cli(["index", str(tmp_path / "nwes")], settings)
    assert typo.returncode == 1
    assert "Không có tệp hay thư mục" in typo.stderr and "nwes" in typo.stderr and "Traceback" not in typo.stderr
    assert settings.index_dir.resolve() == generation  # not even a new generation
    assert _ids(settings) == set(ARTICLES)


def test_adding_one_file_keeps_the_rest_and_sources_says_where_each_came_from(indexed, tmp_path: Path) -> None:
    settings, folder = indexed
    extra = tmp_path / "elsewhere" / "bao_so_9.txt"
    extra.parent.mkdir()
    extra.write_text("Bão số 9 vào Quảng Ngãi\n\nBão số 9 đổ bộ vào Quảng Ngãi, gió giật cấp 12.", encoding="utf-8")
    added = run_cli(["index", str(extra)], settings)
    assert added.returncode == 0, added.stderr
    assert "thêm 1, cập nhật 0, xoá 0, giữ nguyên 5" in added.stdout
    assert _ids(settings) == {*ARTICLES, "bao_so_9"}

    listed = run_cli(["sources"], settings)
    assert listed.returncode == 0, listed.stderr
    assert f"[1] file: {extra} (1 bài)" in listed.stdout and f"[2] folder: {folder} (5 bài)" in listed.stdout
    rows = {line.split("│")[1].strip(): line.split("│")[-2].strip() for line in listed.stdout.splitlines()
            if line.startswith("│") and len(line.split("│")) > 3}
    assert rows["bao_so_9"] == "1" and all(rows[name] == "2" for name in ARTICLES)  # each article's source
    # Re-syncing every remembered source changes nothing and embeds nothing.
    again = run_cli(["index"], settings)
    assert again.returncode == 0, again.stderr
    assert "thêm 0, cập nhật 0, xoá 0, giữ nguyên 6" in again.stdout and "đã nhúng 0 đoạn" in again.stdout


def test_resyncing_a_folder_removes_only_what_vanished_from_it(indexed, tmp_path: Path) -> None:
    settings, folder = indexed
    other = _write(tmp_path / "other", {"dien_gio": "Điện gió Bạc Liêu\n\nNhà máy điện gió Bạc Liêu phát thêm 100 MW."})
    assert run_cli(["index", str(other)], settings).returncode == 0
    (folder / "mua_ha_noi.txt").unlink()
    synced = run_cli(["index", str(folder)], settings)
    assert synced.returncode == 0, synced.stderr
    assert "xoá 1" in synced.stdout
    assert _ids(settings) == {*ARTICLES, "dien_gio"} - {"mua_ha_noi"}


def test_remove_by_id_by_file_and_by_source(indexed, tmp_path: Path) -> None:
    settings, folder = indexed
    other = _write(tmp_path / "other", {"dien_gio": "Điện gió Bạc Liêu\n\nNhà máy điện gió Bạc Liêu phát thêm 100 MW."})
    assert run_cli(["index", str(other)], settings).returncode == 0

    by_id = run_cli(["remove", "lua_mien_tay"], settings)
    assert by_id.returncode == 0, by_id.stderr
    by_file = run_cli(["remove", str(folder / "tau_thong_nhat.txt")], settings)
    assert by_file.returncode == 0, by_file.stderr
    assert _ids(settings) == {"cau_song_han", "mua_ha_noi", "truong_hoc_moi", "dien_gio"}

    by_source = run_cli(["remove", str(other)], settings)
    assert by_source.returncode == 0, by_source.stderr
    assert _ids(settings) == {"cau_song_han", "mua_ha_noi", "truong_hoc_moi"}
    assert str(other) not in run_cli(["sources"], settings).stdout  # the source is forgotten too

    unknown = run_cli(["remove", "khong_co_bai_nay"], settings)
    assert unknown.returncode == 1 and "khong_co_bai_nay" in unknown.stderr and "Traceback" not in unknown.stderr
    assert _ids(settings) == {"cau_song_han", "mua_ha_noi", "truong_hoc_moi"}


def test_a_vanished_source_is_kept_until_prune(indexed, tmp_path: Path) -> None:
    settings, _ = indexed
    other = _write(tmp_path / "other", {"dien_gio": "Điện gió Bạc Liêu\n\nNhà máy điện gió Bạc Liêu phát thêm 100 MW."})
    assert run_cli(["index", str(other)], settings).returncode == 0
    shutil.rmtree(other)

    kept = run_cli(["index"], settings)
    assert kept.returncode == 0, kept.stderr
    assert "--prune" in kept.stdout and "dien_gio" in _ids(settings)

    pruned = run_cli(["index", "--prune"], settings)
    assert pruned.returncode == 0, pruned.stderr
    assert "xoá 1" in pruned.stdout and str(other) in pruned.stdout
    assert _ids(settings) == set(ARTICLES)


def test_a_sync_removing_more_than_half_needs_yes(indexed) -> None:
    settings, folder = indexed
    for name in ("cau_song_han", "lua_mien_tay", "mua_ha_noi"):
        (folder / f"{name}.txt").unlink()
    generation = settings.index_dir.resolve()

    refused = run_cli(["index", str(folder)], settings)  # stdin is not a terminal: no one to ask
    assert refused.returncode == 1
    assert "3 trong 5 bài" in refused.stderr and "--yes" in refused.stderr and "Traceback" not in refused.stderr
    assert settings.index_dir.resolve() == generation and len(_ids(settings)) == 5

    confirmed = run_cli(["index", str(folder), "--yes"], settings)
    assert confirmed.returncode == 0, confirmed.stderr
    assert _ids(settings) == {"tau_thong_nhat", "truong_hoc_moi"}


def test_on_a_terminal_the_guard_asks_and_no_keeps_the_index(indexed) -> None:
    settings, folder = indexed
    for name in ("cau_song_han", "lua_mien_tay", "mua_ha_noi"):
        (folder / f"{name}.txt").unlink()
    generation = settings.index_dir.resolve()
    transcript = _answer_on_a_terminal(["index", str(folder)], settings, question="3 trong 5 bài", answer="n")
    assert "Xoá 3 trong 5 bài của chỉ mục?" in transcript
    assert settings.index_dir.resolve() == generation and len(_ids(settings)) == 5

    transcript = _answer_on_a_terminal(["index", str(folder)], settings, question="3 trong 5 bài", answer="y")
    assert _ids(settings) == {"tau_thong_nhat", "truong_hoc_moi"}, transcript


def _answer_on_a_terminal(args: list[str], settings, *, question: str, answer: str) -> str:
    """Run the CLI with stdin and stderr on a pseudo-terminal; type `answer` once `question` is shown."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen([*HOIDAP, *args], stdin=terminal, stderr=terminal, stdout=subprocess.PIPE,
                               env=cli_env(settings, TERM="xterm-256color"), cwd=settings.data_dir.parent)
    os.close(terminal)
    seen = b""
    answered = False
    while True:
        ready, _, _ = select.select([controller], [], [], 120)
        if not ready:
            process.kill()
            raise AssertionError(f"no prompt within 120 s: {seen[-1000:]!r}")
        try:
            data = os.read(controller, 65536)
        except OSError:
            break
        if not data:
            break
        seen += data
        if not answered and question.encode("utf-8") in seen:
            os.write(controller, f"{answer}\n".encode())
            answered = True
    process.wait(timeout=120)
    os.close(controller)
    assert answered, seen[-1000:]
    return seen.decode("utf-8", "replace")
