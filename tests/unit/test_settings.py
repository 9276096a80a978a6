"""Settings: `.env.example` documents every setting, and values parse as a user would write them."""

from __future__ import annotations

import re
from pathlib import Path

from bot.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    documented = set(re.findall(r"^#?\s*HOIDAP_([A-Z0-9_]+)=", EXAMPLE.read_text(encoding="utf-8"), re.MULTILINE))
    assert documented == {name.upper() for name in Settings.model_fields}


def test_env_example_defaults_match_the_model(tmp_path: Path, monkeypatch) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("HOIDAP_"):
            monkeypatch.delenv(key)
    env_file = tmp_path / ".env"
    active = [line for line in EXAMPLE.read_text(encoding="utf-8").splitlines() if line.startswith("HOIDAP_")]
    env_file.write_text("\n".join(active), encoding="utf-8")
    assert Settings(_env_file=env_file).model_dump() == Settings(_env_file=None).model_dump()


def test_lists_and_secrets_parse_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("HOIDAP_TELEGRAM_ALLOWED_USERS", "11, 22")
    monkeypatch.setenv("HOIDAP_CORPUS", "/a,/b.jsonl")
    monkeypatch.setenv("HOIDAP_TELEGRAM_TOKEN", "123:s3cr3t-t0ken")
    settings = Settings(_env_file=None)
    assert settings.telegram_allowed_users == [11, 22]
    assert settings.corpus == [Path("/a"), Path("/b.jsonl")]
    assert "s3cr3t" not in repr(settings) and settings.telegram_token.get_secret_value() == "123:s3cr3t-t0ken"
