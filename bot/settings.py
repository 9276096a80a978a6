"""Every setting of hoidap in one typed model, read from the environment (prefix HOIDAP_) and `.env`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from platformdirs import user_cache_dir, user_data_dir
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

BUNDLED_CORPUS = Path(__file__).resolve().parent.parent / "index" / "corpus"


class Settings(BaseSettings):
    """Built once in the entry point; everything below takes plain typed arguments."""

    model_config = SettingsConfigDict(env_prefix="HOIDAP_", env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Storage
    data_dir: Path = Field(default_factory=lambda: Path(user_data_dir("hoidap")), description="Where the index and the bot's state live.")
    models_dir: Path = Field(default_factory=lambda: Path(user_cache_dir("hoidap")) / "models", description="Model cache.")
    corpus: Annotated[list[Path], NoDecode] = Field(default_factory=lambda: [BUNDLED_CORPUS], description="Files or folders indexed by default.")

    # Embedding and index
    embedding_model: str = "multilingual-e5-small"
    embedding_precision: Literal["fp32", "bf16"] = "fp32"
    embedding_backend: Literal["onnx", "torch"] = "onnx"
    # ONNX Runtime on 2 cores embeds ~220-word chunks fastest two at a time (bench/indexing.py: 14-18 chunks/s
    # at 1-2 against ~10 at 16, whose padding and larger activations cost more than batching saves).
    embedding_batch_size: int = Field(2, ge=1)
    chunk_size: int = Field(220, ge=20, description="Target words per chunk.")
    chunk_overlap: int = Field(1, ge=0, description="Sentences shared by neighbouring chunks.")
    index_type: Literal["flat", "hnsw"] = "flat"

    # Answering
    answerer: Literal["auto", "extractive", "local", "openai"] = "auto"
    top_k: int = Field(5, ge=1, le=50)
    history_turns: int = Field(4, ge=0, le=50)
    extractive_fallback: bool = True  # an LLM answer that fails the citation checks gives way to a quoted one
    llm_model: str = "qwen2.5-1.5b-instruct"
    llm_threads: int = Field(2, ge=1)
    llm_context: int = Field(4096, ge=512)
    llm_max_tokens: int = Field(256, ge=16)
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    openai_api_key: SecretStr | None = None

    # Telegram
    telegram_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org/bot"
    telegram_allowed_users: Annotated[list[int], NoDecode] = Field(default_factory=list)
    telegram_allowed_chats: Annotated[list[int], NoDecode] = Field(default_factory=list)
    telegram_rate_limit: int = Field(10, ge=1, description="Questions per user per minute.")
    telegram_max_input_chars: int = Field(1000, ge=10)
    telegram_workers: int = Field(2, ge=1)
    telegram_webhook_url: str | None = None
    telegram_webhook_secret: SecretStr | None = None
    telegram_webhook_listen: str = "127.0.0.1"
    telegram_webhook_port: int = 8443
    telegram_inline_cache_seconds: int = Field(600, ge=0, description="How long an inline answer is reused.")
    telegram_correction_minutes: float = Field(10, gt=0, description="How long a 👎 voter may send a correction.")

    log_level: str = "WARNING"
    log_format: Literal["text", "json"] = "text"

    @field_validator("telegram_allowed_users", "telegram_allowed_chats", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(part) for part in value.replace(";", ",").split(",") if part.strip()]
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("corpus", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        if isinstance(value, str):
            return [Path(part) for part in value.split(",") if part.strip()]
        return value

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def state_db(self) -> Path:
        return self.data_dir / "state.sqlite3"
