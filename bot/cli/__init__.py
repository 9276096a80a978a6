"""The `hoidap` command, one module per command group: models, index and sources, ask and chat,
eval, feeds and sync, telegram, feedback and stats."""

from bot.cli import asking, evaluating, feedback, feeds, indexing, migrating, models, serving  # noqa: F401  (they register their commands)
from bot.cli.app import app

__all__ = ["app"]
