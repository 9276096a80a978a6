"""The small error hierarchy of hoidap; the edges (CLI, Telegram) turn these into one clear message."""


class HoidapError(Exception):
    """Base of every error hoidap raises on purpose; its message says what to do.

    The message is English; `vi` is the same message in Vietnamese, which the edges show by default
    (`HOIDAP_LANGUAGE`).
    """

    def __init__(self, message: str, *, vi: str | None = None) -> None:
        super().__init__(message)
        self.vi = vi

    def in_language(self, language: str) -> str:
        return self.vi if language == "vi" and self.vi else str(self)


class ModelFilesMissingError(HoidapError):
    """The embedding model or the LLM is not on disk where the settings say."""


class ModelFilesDamagedError(ModelFilesMissingError):
    """Model files are on disk but not as provisioned (cut short, overwritten, edited)."""


class ModelFetchError(HoidapError):
    """Provisioning a model from its pinned packages failed (download, hash or assembly)."""


class IndexMissingError(HoidapError):
    """No index exists in the data directory yet."""


class IndexCorruptError(HoidapError):
    """The index directory exists but cannot be read consistently."""


class ModelMismatchError(HoidapError):
    """The index was built with another embedding model than the one configured."""


class UnreadableFileError(HoidapError):
    """An input file cannot be used as an article (empty, binary, undecodable, unreadable)."""
