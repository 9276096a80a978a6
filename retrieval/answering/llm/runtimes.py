"""Chat models behind one LangChain interface, so generation has a single code path.

- `openai_chat_model`: any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server,
  LM Studio) through `langchain_openai.ChatOpenAI`.
- `load_local_chat_model`: a GGUF file run in-process on the CPU by llama.cpp through `xllamacpp`,
  wrapped as a `BaseChatModel` that streams tokens.

Why xllamacpp rather than llama-cpp-python: its prebuilt wheel installs in ~2 s, while
llama-cpp-python compiles llama.cpp for ~10 minutes on two cores on every new machine and CI run.
The wheel is built for AVX2 only, yet on this 2-core AVX-512 machine it was not slower than the
native build: Qwen2.5-1.5B Q4_K_M read up to ~70 prompt tokens/s and generated up to ~25 tokens/s
(native llama.cpp: 73 and 11); the 0.5B model 174 and 48 (native: 141 and 26).
"""

from __future__ import annotations

import os
import queue
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import PrivateAttr, SecretStr

from index.embedding import passive_openmp_waits
from index.errors import ModelFilesMissingError
from retrieval.answering.llm.errors import LLMError

# Local OpenAI-compatible servers ignore the key, but the client refuses to start without one.
# This placeholder is not a secret.
LOCAL_SERVER_KEY_PLACEHOLDER = "not-needed"



def openai_chat_model(
    *,
    model: str,
    base_url: str | None = None,
    api_key: SecretStr | str | None = None,
    max_tokens: int = 256,
    temperature: float = 0.1,
    timeout: float = 60.0,
) -> BaseChatModel:
    """A streaming chat model for an OpenAI-compatible endpoint; `base_url=None` means api.openai.com.

    Without `api_key`, a local server (any `base_url`) gets a non-secret placeholder; OpenAI itself
    needs a key, from the argument or the `OPENAI_API_KEY` environment variable.
    """
    from langchain_openai import ChatOpenAI

    if isinstance(api_key, SecretStr):
        api_key = api_key.get_secret_value()
    if api_key is None and base_url is None and not os.environ.get("OPENAI_API_KEY"):
        raise LLMError("The OpenAI answerer needs an API key: set HOIDAP_OPENAI_API_KEY (or HOIDAP_OPENAI_BASE_URL for a local server).")
    key = api_key if api_key is not None else (LOCAL_SERVER_KEY_PLACEHOLDER if base_url else None)
    return ChatOpenAI(
        model=model,
        base_url=base_url,
        api_key=key,  # held as a SecretStr by ChatOpenAI: never printed in reprs or logs
        streaming=True,
        max_tokens=max_tokens,
        temperature=temperature,
        timeout=timeout,
        max_retries=1,
    )


def _to_openai_message(message: BaseMessage) -> dict[str, str]:
    roles = {"system": "system", "human": "user", "ai": "assistant"}
    if message.type not in roles:
        raise LLMError(f"The local model cannot take a {message.type!r} message.")
    content = message.content if isinstance(message.content, str) else str(message.content)
    return {"role": roles[message.type], "content": content}


def _usage(response: dict[str, Any]) -> UsageMetadata | None:
    usage = response.get("usage")
    if not usage:
        return None
    return UsageMetadata(
        input_tokens=usage.get("prompt_tokens", 0),
        output_tokens=usage.get("completion_tokens", 0),
        total_tokens=usage.get("total_tokens", 0),
    )


def _metadata(response: dict[str, Any]) -> dict[str, Any]:
    """llama.cpp's own timings (prompt tokens and tokens/s, cached tokens), kept for benchmarks."""
    return {"timings": response["timings"]} if "timings" in response else {}


_DONE = object()


class LlamaCppChatModel(BaseChatModel):
    """A GGUF model run in-process by llama.cpp (`xllamacpp`), as a streaming LangChain chat model.

    llama.cpp keeps the previous prompt in its cache, so the fixed system text of every question is
    processed once, not per question. The embedded llama.cpp server also listens on a random port
    of 127.0.0.1; it is given a random API key that is never shared, and its /slots page (which
    would show the last prompt) is off, so other local users cannot read or use it.
    """

    model_path: str
    n_threads: int = 2
    n_ctx: int = 4096
    max_tokens: int = 256
    temperature: float = 0.0
    repeat_penalty: float = 1.1
    seed: int = 0
    # Two slots, each with its own prompt cache: the answer prompt and the follow-up rewrite prompt
    # then never evict each other's cached prefix.
    n_parallel: int = 2

    _server: Any = PrivateAttr(default=None)
    _load_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "llama.cpp (xllamacpp)"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_path": self.model_path, "n_ctx": self.n_ctx, "temperature": self.temperature}

    def load(self) -> None:
        """Load the GGUF now (a few seconds) rather than on the first question."""
        with self._load_lock:
            if self._server is not None:
                return
            path = Path(self.model_path)
            if not path.is_file():
                raise ModelFilesMissingError(f"No GGUF file at {path}: run `hoidap models fetch --llm`.")
            passive_openmp_waits()  # before xllamacpp loads libgomp
            import xllamacpp

            params = xllamacpp.CommonParams()
            params.model.path = str(path)
            params.n_ctx = self.n_ctx
            params.n_parallel = self.n_parallel
            params.cpuparams.n_threads = self.n_threads
            params.cpuparams_batch.n_threads = self.n_threads
            params.sampling.temp = self.temperature
            params.sampling.seed = self.seed
            params.verbosity = 0
            params.endpoint_slots = False
            params.ui = False
            params.api_keys = [secrets.token_hex(16)]
            try:
                self._server = xllamacpp.Server(params)
            except (RuntimeError, ValueError) as error:
                raise LLMError(f"llama.cpp could not load {path}: {error}") from error

    def warm_up(self, messages: list[BaseMessage]) -> None:
        """Process `messages` once so llama.cpp caches them: the first question then costs what later ones do."""
        self.load()
        request = self._request(messages, None, stream=False, max_tokens=1)
        try:
            self._server.handle_chat_completions(request)
        except (RuntimeError, ValueError) as error:
            raise LLMError(f"llama.cpp failed: {error}") from error

    def _request(
        self, messages: list[BaseMessage], stop: list[str] | None, stream: bool, max_tokens: int | None = None
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "messages": [_to_openai_message(m) for m in messages],
            "max_tokens": max_tokens or self.max_tokens,
            "temperature": self.temperature,
            # Greedy decoding of a small model can loop ("[1] [1] [1] ..."); a mild penalty stops it.
            "repeat_penalty": self.repeat_penalty,
            "seed": self.seed,
            "cache_prompt": True,
            "stream": stream,
        }
        if stop:
            request["stop"] = stop
        return request

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.load()
        try:
            request = self._request(messages, stop, stream=False, max_tokens=kwargs.get("max_tokens"))
            response = self._server.handle_chat_completions(request)
        except (RuntimeError, ValueError) as error:
            raise LLMError(f"llama.cpp failed: {error}") from error
        if "error" in response:
            raise LLMError(f"llama.cpp failed: {response['error']}")
        content = response["choices"][0]["message"].get("content") or ""
        message = AIMessage(content=content, usage_metadata=_usage(response), response_metadata=_metadata(response))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        """Generation runs on a worker thread (xllamacpp calls back per token); tokens come through a queue."""
        self.load()
        tokens: queue.Queue[Any] = queue.Queue()
        stopped = threading.Event()

        def on_chunk(chunk: dict[str, Any]) -> bool:
            tokens.put(chunk)
            return stopped.is_set()  # True asks llama.cpp to stop: the reader went away

        def generate() -> None:
            try:
                request = self._request(messages, stop, stream=True, max_tokens=kwargs.get("max_tokens"))
                self._server.handle_chat_completions(request, on_chunk)
            except (RuntimeError, ValueError) as error:
                tokens.put(LLMError(f"llama.cpp failed: {error}"))
            finally:
                tokens.put(_DONE)

        worker = threading.Thread(target=generate, name="llama.cpp generation", daemon=True)
        worker.start()
        try:
            while (item := tokens.get()) is not _DONE:
                if isinstance(item, LLMError):
                    raise item
                if "error" in item:
                    raise LLMError(f"llama.cpp failed: {item['error']}")
                for choice in item.get("choices", []):
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        if run_manager:
                            run_manager.on_llm_new_token(text)
                        yield ChatGenerationChunk(message=AIMessageChunk(content=text))
                if "timings" in item or "usage" in item:
                    chunk = AIMessageChunk(content="", usage_metadata=_usage(item), response_metadata=_metadata(item))
                    yield ChatGenerationChunk(message=chunk)
        finally:
            stopped.set()
            worker.join()


def load_local_chat_model(
    model_path: Path,
    *,
    threads: int = 2,
    context: int = 4096,
    max_tokens: int = 256,
    temperature: float = 0.0,
) -> LlamaCppChatModel:
    """Load a GGUF instruct model for the local answerer; raises ModelFilesMissingError if it is absent."""
    model = LlamaCppChatModel(
        model_path=str(model_path), n_threads=threads, n_ctx=context, max_tokens=max_tokens, temperature=temperature
    )
    model.load()
    return model
