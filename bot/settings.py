"""Every setting of hoidap in one typed model, read from the environment (prefix HOIDAP_) and `.env`.

`load_settings` is how an entry point builds it: every bad value becomes one line naming the setting
and what it expects (`SettingsError`), and unknown `HOIDAP_*` names become warnings with the nearest
valid name. Choice values (`HOIDAP_ANSWERER=EXTRACTIVE`) are case-insensitive and normalised.
"""

from __future__ import annotations

import difflib
import io
import json
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from annotated_types import Ge, Gt, Le
from dotenv import dotenv_values
from platformdirs import user_cache_dir, user_data_dir
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

from index.errors import HoidapError

BUNDLED_CORPUS = Path(__file__).resolve().parent.parent / "index" / "corpus"
# What a new index is embedded in when HOIDAP_EMBEDDING_PRECISION is unset (bench/README.md, "int8 embedding").
NEW_INDEX_PRECISION = "int8"
PREFIX = "HOIDAP_"
ENV_FILE = Path(".env")


_INTERVAL = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_interval(text: str) -> float:
    """Seconds in an interval written `30m`, `2h`, `1h30m` or `90s`; ValueError otherwise."""
    match = _INTERVAL.fullmatch(text.strip().lower())
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f"{text!r} is not an interval; write it as 30m, 2h, 1h30m or 90s")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total < 60:
        raise ValueError(f"{text!r} is shorter than a minute; feeds are not refreshed that often")
    return float(total)


class Settings(BaseSettings):
    """Built once in the entry point; everything below takes plain typed arguments."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_file=ENV_FILE, env_file_encoding="utf-8", extra="ignore")

    language: Literal["vi", "en"] = Field("vi", description="Language of the CLI's own messages and summaries.")

    # Storage
    data_dir: Path = Field(default_factory=lambda: Path(user_data_dir("hoidap")), description="Where the index and the bot's state live.")
    models_dir: Path = Field(default_factory=lambda: Path(user_cache_dir("hoidap")) / "models", description="Model cache.")
    corpus: Annotated[list[Path], NoDecode] = Field(default_factory=lambda: [BUNDLED_CORPUS], description="Files or folders indexed by default.")
    # PostgreSQL with pgvector instead of the embedded FAISS + SQLite index (unset: embedded, in data_dir).
    database_url: SecretStr | None = Field(None, description="postgresql:// URL of the index database.")
    database_read_url: SecretStr | None = Field(
        None, description="postgresql:// URL of a read replica: questions read from it, syncs write to database_url.")
    database_vector_type: Literal["vector", "halfvec"] = "vector"  # halfvec: half the bytes per vector
    hnsw_m: int = Field(16, ge=2, le=100, description="pgvector HNSW graph degree (index build).")
    hnsw_ef_construction: int = Field(64, ge=4, le=1000, description="pgvector HNSW build depth.")
    hnsw_ef_search: int = Field(400, ge=1, le=1000, description="pgvector HNSW search depth (per query).")

    # Embedding and index
    embedding_model: str = "multilingual-e5-small"
    # int8: the ONNX graph with int8 weight matrices, made once from the fp32 export (index.onnx_encoder.quantize_onnx);
    # its encoder is 1.7x as fast as fp32's, with tuning-set R@5 within .002 (bench/README.md). An index records the
    # precision that embedded it, and questions are embedded in the same one. Unset: the existing index's precision
    # (an index built before precisions were recorded is fp32), int8 for a new one; set, a sync re-embeds to it.
    embedding_precision: Literal["fp32", "int8", "bf16"] | None = None
    embedding_backend: Literal["onnx", "torch"] = "onnx"
    # ONNX Runtime on 2 cores embeds ~220-word chunks fastest two at a time (bench/indexing.py: 14-18 chunks/s
    # at 1-2 against ~10 at 16, whose padding and larger activations cost more than batching saves).
    embedding_batch_size: int = Field(2, ge=1)
    # English questions are read against the Vietnamese sentences by a stronger multilingual model
    # (index.english_model); `none` reads them with embedding_model.
    english_model: str = Field("embeddinggemma-300m", description="Model reading English questions: a name, a folder, or none.")
    chunk_size: int = Field(220, ge=20, description="Target words per chunk.")
    chunk_overlap: int = Field(1, ge=0, description="Sentences shared by neighbouring chunks.")
    index_type: Literal["flat", "hnsw"] = "flat"
    max_article_mb: float = Field(16, gt=0, description="Size cap per article; a bigger file or jsonl line is skipped.")

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

    telegram_admins: Annotated[list[int], NoDecode] = Field(
        default_factory=list, description="User ids who may /add pages and feeds and see /feeds.")

    # Articles from the web
    fetch_allow_private: bool = Field(False, description="Allow fetching loopback and private-network addresses.")
    fetch_timeout: float = Field(20.0, gt=0, description="Seconds for one request, body included.")
    fetch_max_bytes: int = Field(5_000_000, ge=10_000, description="Largest page or feed fetched.")
    fetch_host_delay: float = Field(1.0, ge=0, description="Seconds between two requests to one host.")
    fetch_retries: int = Field(2, ge=0, le=10, description="Retries on 429 and 5xx, with back-off.")
    sync_every: str | None = Field(None, description="`hoidap telegram` refreshes the feeds this often (e.g. 30m).")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "WARNING"
    log_format: Literal["text", "json"] = "text"

    @field_validator("language", "embedding_precision", "embedding_backend", "index_type", "answerer", "log_level",
                     "log_format", mode="before")
    @classmethod
    def _any_case(cls, value: object, info: ValidationInfo) -> object:
        """`EXTRACTIVE` or ` Extractive ` means extractive; a value that matches no choice is left as written."""
        if not isinstance(value, str):
            return value
        annotation = cls.model_fields[str(info.field_name)].annotation
        members = [annotation] if typing.get_origin(annotation) is Literal else typing.get_args(annotation)
        choices = [choice for member in members if typing.get_origin(member) is Literal
                   for choice in typing.get_args(member)]
        if not value.strip() and type(None) in typing.get_args(annotation):
            return None  # `HOIDAP_EMBEDDING_PRECISION=` is unset
        return next((choice for choice in choices if choice.casefold() == value.strip().casefold()), value)

    @field_validator("data_dir", "models_dir", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("sync_every")
    @classmethod
    def _check_interval(cls, value: str | None) -> str | None:
        if value is not None and value.strip():
            parse_interval(value)
            return value.strip()
        return None

    @field_validator("telegram_allowed_users", "telegram_allowed_chats", "telegram_admins", mode="before")
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
            return [Path(part.strip()).expanduser() for part in value.split(",") if part.strip()]
        return value

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def state_db(self) -> Path:
        return self.data_dir / "state.sqlite3"


# ---------------------------------------------------------------------------- loading, with clear problems


@dataclass(frozen=True)
class Message:
    """One line for the user, in both languages of the CLI."""

    en: str
    vi: str

    def in_language(self, language: str) -> str:
        return self.en if language == "en" else self.vi


class SettingsError(HoidapError):
    """Settings that cannot be used: one line per problem, each naming the setting to fix."""

    def __init__(self, problems: list[Message], warnings: list[Message] | None = None) -> None:
        super().__init__("\n".join(p.en for p in problems), vi="\n".join(p.vi for p in problems))
        self.problems = problems
        self.warnings = warnings or []  # said too, so that a misspelt name is seen beside the error it causes


SETTING_NAMES = tuple(PREFIX + name.upper() for name in Settings.model_fields)


def load_settings(env_file: Path = ENV_FILE, environ: Mapping[str, str] | None = None) -> tuple[Settings, list[Message]]:
    """The settings from `environ` (default: the process environment) and `env_file`, and warnings.

    Raises `SettingsError` listing every unusable value (and an unreadable `env_file`); the warnings
    name unknown `HOIDAP_*` keys with the nearest valid name.
    """
    environ = os.environ if environ is None else environ
    from_file = read_env_file(env_file)
    warnings = [_unknown(key) for key in sorted({*from_file, *environ}) if _is_unknown(key)]
    try:
        settings = Settings(_env_file=env_file if from_file else None)
    except ValidationError as error:
        raise SettingsError([_problem(detail) for detail in error.errors()], warnings) from None
    except PydanticSettingsError as error:
        raise SettingsError([Message(str(error), str(error))], warnings) from None
    if settings.data_dir.exists() and not settings.data_dir.is_dir():
        raise SettingsError([Message(f"HOIDAP_DATA_DIR={settings.data_dir}: is a file, not a folder",
                                     f"HOIDAP_DATA_DIR={settings.data_dir}: là một tệp, không phải thư mục")], warnings)
    return settings, warnings


def read_env_file(path: Path) -> dict[str, str | None]:
    """The `KEY=value` pairs of a `.env` file ({} when there is none); a file that is not text is a `SettingsError`."""
    if not path.exists():
        return {}
    if not path.is_file():  # a folder, or a FIFO that would block the read
        raise SettingsError([Message(f"{path}: not a regular file; settings are read from a text file of KEY=value lines",
                                     f"{path}: không phải tệp thường; thiết lập được đọc từ một tệp văn bản gồm các dòng KEY=value")])
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SettingsError([Message(f"{path}: cannot be read ({error.strerror})",
                                     f"{path}: không đọc được ({error.strerror})")]) from None
    try:
        if b"\0" in data:
            raise UnicodeDecodeError("utf-8", data, data.index(b"\0"), data.index(b"\0") + 1, "NUL byte")
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise SettingsError([Message(
            f"{path}: not a UTF-8 text file (byte {data[error.start]:#04x} at offset {error.start}); "
            "settings are read from KEY=value lines",
            f"{path}: không phải tệp văn bản UTF-8 (byte {data[error.start]:#04x} ở vị trí {error.start}); "
            "thiết lập được đọc từ các dòng KEY=value")]) from None
    return dict(dotenv_values(stream=io.StringIO(text)))


def env_file_value(path: Path, key: str) -> str | None:
    """One value of a `.env` file, or None when the file or the key is missing or the file is unreadable."""
    try:
        values = read_env_file(path)
    except SettingsError:
        return None  # load_settings reports it; the caller only wants a hint
    wanted = key.upper()
    return next((value for name, value in values.items() if name.upper() == wanted), None)


def data_dir_writable(settings: Settings) -> bool:
    """Whether the data directory (or, while it does not exist yet, the folder it would be made in) can be written."""
    directory = settings.data_dir
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    return os.access(directory, os.W_OK | os.X_OK)


def _is_unknown(key: str) -> bool:
    return key.upper().startswith(PREFIX) and key.upper() not in SETTING_NAMES


def _unknown(key: str) -> Message:
    # Compared without the prefix every name shares, which would make anything look close.
    nearest = difflib.get_close_matches(key.upper().removeprefix(PREFIX), [n.removeprefix(PREFIX) for n in SETTING_NAMES],
                                        n=1, cutoff=0.6)
    if nearest:
        return Message(f"{key}: unknown setting; did you mean {PREFIX}{nearest[0]}?",
                       f"{key}: không có thiết lập này; có phải ý bạn là {PREFIX}{nearest[0]}?")
    return Message(f"{key}: unknown setting (.env.example lists them all)",
                   f"{key}: không có thiết lập này (.env.example liệt kê tất cả)")


def _problem(detail: Mapping) -> Message:
    """`HOIDAP_TOP_K=abc: expected a whole number from 1 to 50`, from one pydantic error."""
    name = str(detail["loc"][0]) if detail.get("loc") else ""
    field = Settings.model_fields.get(name)
    if field is None:
        return Message(detail["msg"], detail["msg"])
    shown = "***" if _is_secret(field.annotation) else _shown(detail.get("input"))
    expected = _expected(field.annotation, field.metadata) or Message(
        f"invalid ({detail['msg']})", f"giá trị không hợp lệ ({detail['msg']})")
    return Message(f"{PREFIX}{name.upper()}={shown}: {expected.en}", f"{PREFIX}{name.upper()}={shown}: {expected.vi}")


def _expected(annotation: object, metadata: list) -> Message | None:
    """What a field accepts, said for a person."""
    if typing.get_origin(annotation) is Literal:
        choices = ", ".join(str(choice) for choice in typing.get_args(annotation))
        return Message(f"expected one of {choices} (any case)",
                       f"cần một trong các giá trị {choices} (không phân biệt hoa thường)")
    if annotation is bool:
        return Message("expected true or false", "cần true hoặc false")
    if annotation is int:
        low = next((m.ge for m in metadata if isinstance(m, Ge)), None)
        high = next((m.le for m in metadata if isinstance(m, Le)), None)
        if low is not None and high is not None:
            return Message(f"expected a whole number from {low} to {high}", f"cần một số nguyên từ {low} đến {high}")
        if low is not None:
            return Message(f"expected a whole number of at least {low}", f"cần một số nguyên từ {low} trở lên")
        return Message("expected a whole number", "cần một số nguyên")
    if annotation is float:
        above = next((m.gt for m in metadata if isinstance(m, Gt)), None)
        if above is not None:
            return Message(f"expected a number greater than {above}", f"cần một số lớn hơn {above}")
        return Message("expected a number", "cần một số")
    if typing.get_origin(annotation) is list and typing.get_args(annotation) == (int,):
        return Message("expected whole numbers separated by commas", "cần các số nguyên, cách nhau bởi dấu phẩy")
    return None


def _is_secret(annotation: object) -> bool:
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


def _shown(value: object) -> str:
    """The value as the user wrote it; quoted when it is empty or has spaces at either end."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > 60:
        text = text[:59] + "…"
    return json.dumps(text, ensure_ascii=False) if not text or text != text.strip() else text
