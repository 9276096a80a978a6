"""Bad settings through the real CLI: one line naming the setting, exit status 2, never a traceback.

Each value is tried from the environment and from a `.env` file in the working directory; unknown
`HOIDAP_*` names are warned about with the nearest valid name; a read-only data directory still
answers and refuses to index, saying so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import HOIDAP, cli_env, make_settings

pytestmark = pytest.mark.e2e

QUESTION = "Tổng số đảng viên toàn Đảng bộ tỉnh năm 2023 là bao nhiêu?"

# (setting, value, the line in Vietnamese, the line in English)
BAD_VALUES = [
    ("HOIDAP_TOP_K", "0", "HOIDAP_TOP_K=0: cần một số nguyên từ 1 đến 50", "HOIDAP_TOP_K=0: expected a whole number from 1 to 50"),
    ("HOIDAP_TOP_K", "-1", "HOIDAP_TOP_K=-1: cần một số nguyên từ 1 đến 50", "HOIDAP_TOP_K=-1: expected a whole number from 1 to 50"),
    ("HOIDAP_TOP_K", "abc", "HOIDAP_TOP_K=abc: cần một số nguyên từ 1 đến 50", "HOIDAP_TOP_K=abc: expected a whole number from 1 to 50"),
    ("HOIDAP_TOP_K", "", 'HOIDAP_TOP_K="": cần một số nguyên từ 1 đến 50', 'HOIDAP_TOP_K="": expected a whole number from 1 to 50'),
    ("HOIDAP_ANSWERER", "", 'HOIDAP_ANSWERER="": cần một trong các giá trị auto, extractive, local, openai (không phân biệt hoa thường)',
     'HOIDAP_ANSWERER="": expected one of auto, extractive, local, openai (any case)'),
    ("HOIDAP_ANSWERER", "quoting", "HOIDAP_ANSWERER=quoting: cần một trong các giá trị auto, extractive, local, openai (không phân biệt hoa thường)",
     "HOIDAP_ANSWERER=quoting: expected one of auto, extractive, local, openai (any case)"),
    ("HOIDAP_EXTRACTIVE_FALLBACK", "maybe", "HOIDAP_EXTRACTIVE_FALLBACK=maybe: cần true hoặc false",
     "HOIDAP_EXTRACTIVE_FALLBACK=maybe: expected true or false"),
    ("HOIDAP_TELEGRAM_ALLOWED_USERS", "12,abc", "HOIDAP_TELEGRAM_ALLOWED_USERS=12,abc: cần các số nguyên, cách nhau bởi dấu phẩy",
     "HOIDAP_TELEGRAM_ALLOWED_USERS=12,abc: expected whole numbers separated by commas"),
    ("HOIDAP_LOG_LEVEL", "loud", "HOIDAP_LOG_LEVEL=loud: cần một trong các giá trị DEBUG, INFO, WARNING, ERROR, CRITICAL (không phân biệt hoa thường)",
     "HOIDAP_LOG_LEVEL=loud: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL (any case)"),
]
EVERY_COMMAND = [["ask", QUESTION], ["ask", "-"], ["chat"], ["sources"], ["index"], ["index", "--check"],
                 ["eval", "--questions", "q.jsonl"], ["models", "fetch"], ["telegram"]]


def hoidap(args: list[str], cwd: Path, env: dict[str, str], *, input: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HOIDAP, *args], input=input, capture_output=True, text=True, timeout=300, env=env, cwd=cwd, check=False)


@pytest.fixture
def place(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A working directory and an environment with no HOIDAP_* setting but the data and models dirs."""
    settings = make_settings(tmp_path / "data", tmp_path / "models")
    env = {k: v for k, v in cli_env(settings).items() if k != "HOIDAP_ANSWERER"}
    return tmp_path, env


def stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize(("name", "value", "vi", "en"), BAD_VALUES, ids=[f"{n}={v!r}" for n, v, _, _ in BAD_VALUES])
@pytest.mark.parametrize("where", ["environment", ".env"])
def test_a_bad_value_is_one_line_naming_the_setting(place, where: str, name: str, value: str, vi: str, en: str) -> None:
    cwd, env = place
    if where == "environment":
        env[name] = value
    else:
        (cwd / ".env").write_text(f"# my settings\n{name}={value}\n", encoding="utf-8")
    result = hoidap(["sources"], cwd, env)
    assert result.returncode == 2, result.stderr
    assert stderr_lines(result) == [vi]
    assert result.stdout == ""

    english = hoidap(["sources"], cwd, {**env, "HOIDAP_LANGUAGE": "en"})
    assert english.returncode == 2 and stderr_lines(english) == [en]


@pytest.mark.parametrize("args", EVERY_COMMAND, ids=" ".join)
def test_every_command_stops_on_a_bad_setting_before_doing_anything(place, args: list[str]) -> None:
    cwd, env = place
    result = hoidap(args, cwd, {**env, "HOIDAP_TOP_K": "abc"}, input=QUESTION + "\n")
    assert result.returncode == 2, result.stderr
    assert stderr_lines(result) == ["HOIDAP_TOP_K=abc: cần một số nguyên từ 1 đến 50"]
    assert not (cwd / "data").exists()  # nothing was created or indexed


def test_every_problem_gets_its_own_line(place) -> None:
    cwd, env = place
    (cwd / ".env").write_text("HOIDAP_TOP_K=abc\nHOIDAP_LANGUAGE=en\n", encoding="utf-8")
    result = hoidap(["sources"], cwd, {**env, "HOIDAP_CHUNK_SIZE": "5", "HOIDAP_INDEX_TYPE": "ivf"})
    assert result.returncode == 2
    # HOIDAP_LANGUAGE=en from the .env file is honoured although the settings are invalid.
    assert stderr_lines(result) == ["HOIDAP_CHUNK_SIZE=5: expected a whole number of at least 20",
                                    "HOIDAP_INDEX_TYPE=ivf: expected one of flat, hnsw (any case)",
                                    "HOIDAP_TOP_K=abc: expected a whole number from 1 to 50"]


@pytest.mark.parametrize("content", [b"\x00\x01\x02\xff\xfe binary", "HOIDAP_TOP_K=5\n".encode("utf-16")],
                         ids=["binary", "utf-16"])
def test_a_dotenv_that_is_not_text_is_one_line(place, content: bytes) -> None:
    cwd, env = place
    (cwd / ".env").write_bytes(content)
    result = hoidap(["sources"], cwd, env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = stderr_lines(result)
    assert line.startswith(".env: không phải tệp văn bản UTF-8 (byte 0x") and "KEY=value" in line


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_dotenv_that_is_not_a_regular_file_is_one_line(place, kind: str) -> None:
    cwd, env = place
    (cwd / ".env").mkdir() if kind == "folder" else os.mkfifo(cwd / ".env")
    result = hoidap(["sources"], cwd, env)  # a FIFO is never opened: the run would hang on it
    assert result.returncode == 2
    assert stderr_lines(result) == [".env: không phải tệp thường; thiết lập được đọc từ một tệp văn bản gồm các dòng KEY=value"]


def test_a_secret_is_never_echoed_in_the_message(place) -> None:
    cwd, env = place
    result = hoidap(["sources"], cwd, {**env, "HOIDAP_TOP_K": "x", "HOIDAP_TELEGRAM_TOKEN": "123:s3cr3t"})
    assert result.returncode == 2 and "s3cr3t" not in result.stderr


@pytest.mark.parametrize("where", ["environment", ".env"])
def test_an_unknown_name_is_warned_about_with_the_nearest_one(place, where: str) -> None:
    cwd, env = place
    if where == "environment":
        env.update(HOIDAP_TOPK="3", HOIDAP_WHATEVER="1")
    else:
        (cwd / ".env").write_text("HOIDAP_TOPK=3\nHOIDAP_WHATEVER=1\n", encoding="utf-8")
    result = hoidap(["sources"], cwd, env)
    lines = stderr_lines(result)
    assert lines[:2] == ["HOIDAP_TOPK: không có thiết lập này; có phải ý bạn là HOIDAP_TOP_K?",
                         "HOIDAP_WHATEVER: không có thiết lập này (.env.example liệt kê tất cả)"]
    assert result.returncode != 2 and "Traceback" not in result.stderr  # not fatal: the command ran (no index yet)
    english = hoidap(["sources"], cwd, {**env, "HOIDAP_LANGUAGE": "en"})
    assert "HOIDAP_TOPK: unknown setting; did you mean HOIDAP_TOP_K?" in stderr_lines(english)


def test_choice_values_are_case_insensitive(built_index_settings, tmp_path: Path) -> None:
    env = cli_env(built_index_settings, HOIDAP_ANSWERER="EXTRACTIVE", HOIDAP_LOG_LEVEL="error")
    result = hoidap(["ask", "--json", QUESTION], tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert "74.127" in result.stdout


def test_a_data_dir_that_is_a_file_is_one_line(place) -> None:
    cwd, env = place
    (cwd / "data").write_text("not a folder", encoding="utf-8")
    for args in (["sources"], ["index"], ["ask", QUESTION]):
        result = hoidap(args, cwd, env)
        assert result.returncode == 2, result.stderr
        assert stderr_lines(result) == [f"HOIDAP_DATA_DIR={cwd / 'data'}: là một tệp, không phải thư mục"]


# ---------------------------------------------------------------------------- a read-only data directory


def read_only(command: list[str], directory: Path) -> list[str]:
    """`command` run with `directory` read-only: a read-only bind mount for root (who ignores file modes),
    the file modes otherwise."""
    if os.geteuid() != 0:
        for path in [directory, *directory.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode & ~0o222)
        return command
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(directory), *command]


def test_a_read_only_data_dir_answers_and_refuses_to_index(built_index_settings, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(built_index_settings.data_dir, data, symlinks=True)
    settings = make_settings(data, built_index_settings.models_dir)
    env = cli_env(settings)
    warning = (f"HOIDAP_DATA_DIR={data}: thư mục chỉ đọc; ask, chat và sources vẫn dùng được chỉ mục hiện có, "
               "còn index, telegram và eval --corpus cần ghi được vào đây")
    try:
        ask = subprocess.run(read_only([*HOIDAP, "ask", "--json", QUESTION], data), capture_output=True, text=True,
                             env=env, cwd=tmp_path, timeout=300, check=False)
        assert ask.returncode == 0, ask.stderr
        assert "74.127" in ask.stdout and warning in stderr_lines(ask)

        chat = subprocess.run(read_only([*HOIDAP, "chat"], data), input=QUESTION + "\n", capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=300, check=False)
        assert chat.returncode == 0, chat.stderr
        assert "74.127" in chat.stdout

        index = subprocess.run(read_only([*HOIDAP, "index"], data), capture_output=True, text=True, env=env,
                               cwd=tmp_path, timeout=300, check=False)
        assert index.returncode == 2 and stderr_lines(index) == [warning]
    finally:
        for path in [data, *data.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o200)
    assert sorted(p.name for p in data.iterdir()) == sorted(p.name for p in built_index_settings.data_dir.iterdir())
