"""The edges: settings, wiring, the CLI and the Telegram bot."""
