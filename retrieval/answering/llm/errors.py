"""What a failing chat model raises, and the one error the answerers turn those failures into."""

from __future__ import annotations

import openai

from index.errors import HoidapError


class LLMError(HoidapError):
    """The language model (local runtime or remote endpoint) failed or is misconfigured."""


# What a failing endpoint or runtime raises; the generative answerer turns these into `LLMError`.
LLM_FAILURES: tuple[type[BaseException], ...] = (openai.OpenAIError, LLMError)
