"""The embedded engine: llama-cpp-python running a GGUF model in this process.

One llama context serves one generation at a time, so all model work runs on one dedicated thread
(a single-worker executor, FIFO). Requests beyond the running one wait in a bounded queue; when it is
full ``open()`` raises ``EngineBusy`` before any work is done. The token loop checks a cancel flag
between tokens, so closing a response (or cancelling the task awaiting a non-streamed answer) stops
generation within one token.
"""

from __future__ import annotations

import asyncio
import enum
import os
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from cocoon.inference import _openai as oai
from cocoon.inference._generation import (
    ChoiceDone,
    Event,
    Failed,
    Finished,
    GenerationJob,
    TextDelta,
    TokenModel,
    run_generation,
)
from cocoon.inference._protocol import JSON_HEADERS, SSE_HEADERS, Endpoint, EngineResponse
from cocoon.inference.errors import EngineBusy, EngineUnavailable, ModelError
from cocoon.inference.models import EMBEDDED_MODEL_NAME, embedded_model_path, model_name_from_path

if TYPE_CHECKING:
    from llama_cpp import Llama
    from rich.console import Console

__all__ = ["DEFAULT_MAX_QUEUE", "DEFAULT_N_CTX", "EmbeddedEngine", "EmbeddedStats"]

DEFAULT_N_CTX = 2048
DEFAULT_MAX_QUEUE = 8
_MAX_THREADS = 16


class _State(enum.Enum):
    NEW = "new"  # constructed, model not loaded
    READY = "ready"  # model loaded, serving
    CLOSED = "closed"  # aclose() called; never reopens


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbeddedStats:
    """A snapshot for health views."""

    state: str
    running: int  # admitted requests: the one generating plus those queued behind it
    max_queue: int
    requests: int
    cancelled: int
    failed: int
    busy_refusals: int
    completion_tokens: int
    load_seconds: float | None


@dataclass(slots=True)
class _Loaded:
    llama: Llama
    end_tokens: frozenset[int]
    chat_format: Any  # llama_cpp Jinja2ChatFormatter built from the GGUF's chat template
    n_vocab: int


class EmbeddedEngine:
    """An :class:`~cocoon.inference.Engine` backed by llama-cpp-python.

    ``model_path`` defaults to the embedded SmolLM2-135M-Instruct GGUF. ``max_queue`` is how many
    requests may wait behind the one generating. ``seed`` makes sampling reproducible for requests
    that bring no ``seed`` of their own (``None``: a fresh random seed per request). ``progress``
    shows a Rich spinner on stderr (or ``console``) while the model loads.
    """

    def __init__(
        self,
        model_path: Path | str | None = None,
        *,
        model_name: str | None = None,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        seed: int | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
        progress: bool = False,
        console: Console | None = None,
    ) -> None:
        if n_ctx < 16:
            raise ValueError("n_ctx must be at least 16")
        if n_threads is not None and not 1 <= n_threads <= 1024:
            raise ValueError("n_threads must be between 1 and 1024")
        if max_queue < 0:
            raise ValueError("max_queue must be >= 0")
        self._path = Path(model_path) if model_path is not None else None
        self.model_name = model_name or (
            model_name_from_path(self._path) if self._path else EMBEDDED_MODEL_NAME
        )
        self.n_ctx = n_ctx
        # llama.cpp's own default: about one thread per physical core; more threads spin-wait and
        # run much slower on a busy machine.
        self.n_threads = n_threads or max(1, min((os.cpu_count() or 2) // 2, _MAX_THREADS))
        self.seed = seed
        self.max_queue = max_queue
        self._progress = progress
        self._console = console
        self._state = _State.NEW
        self._start_lock = asyncio.Lock()
        self._executor: ThreadPoolExecutor | None = None
        # Prompts are rendered and tokenized beside the generation thread (tokenizing only reads the
        # vocabulary); aclose() drains this pool before the model is freed.
        self._prep_executor: ThreadPoolExecutor | None = None
        self._loaded: _Loaded | None = None
        self._jobs: dict[asyncio.Future[Finished | Failed], threading.Event] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._requests = self._cancelled = self._failed = self._busy = self._tokens = 0
        self._load_seconds: float | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def model_path(self) -> Path:
        return self._path if self._path is not None else embedded_model_path()

    async def start(self) -> None:
        async with self._start_lock:
            if self._state is _State.READY:
                return
            if self._state is _State.CLOSED:
                raise EngineUnavailable("the embedded engine is closed")
            path = self.model_path
            if not path.is_file():
                raise ModelError(f"model file not found: {path}")
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cocoon-llama")
            loop = asyncio.get_running_loop()
            started = time.perf_counter()
            try:
                if self._progress:
                    self._loaded = await self._load_with_progress(loop, executor, path)
                else:
                    self._loaded = await loop.run_in_executor(executor, self._load, path)
            except BaseException:
                executor.shutdown(wait=False)
                raise
            self._load_seconds = time.perf_counter() - started
            self._executor = executor
            self._prep_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cocoon-tokenize")
            self._state = _State.READY

    async def _load_with_progress(
        self, loop: asyncio.AbstractEventLoop, executor: ThreadPoolExecutor, path: Path
    ) -> _Loaded:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        console = self._console or Console(stderr=True)
        size_mb = (await asyncio.to_thread(path.stat)).st_size / 1e6
        columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            bar.add_task(
                f"Loading {self.model_name} ({size_mb:.0f} MB, {self.n_threads} threads)", total=None
            )
            loaded = await loop.run_in_executor(executor, self._load, path)
        console.print(f"[green]✓[/] {self.model_name} loaded, context {self.n_ctx} tokens")
        return loaded

    def _load(self, path: Path) -> _Loaded:
        # Runs on the engine thread. Imported here: llama_cpp loads a shared library at import.
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        try:
            llama = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                n_threads_batch=self.n_threads,  # its default (every CPU) crawls on a busy machine
                seed=self.seed if self.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(f"cannot load model {path}: {exc}") from exc
        vocab = llama_cpp.llama_model_get_vocab(llama.model)
        n_vocab = llama.n_vocab()
        end_tokens = frozenset(t for t in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, t))
        template = llama.metadata.get("tokenizer.chat_template")
        chat_format = None
        if template:

            def text_of(token: int) -> str:
                return (
                    llama.detokenize([token], special=True).decode("utf-8", "replace") if token >= 0 else ""
                )

            chat_format = Jinja2ChatFormatter(
                template=template,
                eos_token=text_of(llama.token_eos()),
                bos_token=text_of(llama.token_bos()),
            )
        return _Loaded(llama=llama, end_tokens=end_tokens, chat_format=chat_format, n_vocab=n_vocab)

    async def aclose(self) -> None:
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        for cancel in self._jobs.values():
            cancel.set()
        executor, loaded, prep = self._executor, self._loaded, self._prep_executor
        self._executor = self._loaded = self._prep_executor = None
        if prep is not None:
            await asyncio.to_thread(prep.shutdown, wait=True)
        if executor is None:
            return
        try:
            if loaded is not None:
                # FIFO executor: the close runs after the (now cancelled) jobs have returned.
                await asyncio.get_running_loop().run_in_executor(executor, loaded.llama.close)
        finally:
            executor.shutdown(wait=False)

    async def __aenter__(self) -> EmbeddedEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def healthy(self) -> bool:
        return self._state is _State.READY

    async def wait_idle(self) -> None:
        """Return once no request is running or queued."""
        await self._idle.wait()

    def statistics(self) -> EmbeddedStats:
        return EmbeddedStats(
            state=self._state.value,
            running=len(self._jobs),
            max_queue=self.max_queue,
            requests=self._requests,
            cancelled=self._cancelled,
            failed=self._failed,
            busy_refusals=self._busy,
            completion_tokens=self._tokens,
            load_seconds=self._load_seconds,
        )

    # -- requests ---------------------------------------------------------------------------------

    async def open(self, endpoint: Endpoint, body: dict[str, Any]) -> EngineResponse:
        loaded, executor, prep = self._loaded, self._executor, self._prep_executor
        if self._state is not _State.READY or loaded is None or executor is None or prep is None:
            raise EngineUnavailable(f"the embedded engine is {self._state.value}, not ready")
        try:
            request = oai.parse_request(endpoint, body)
        except oai.InvalidRequest as exc:
            return _error_response(str(exc), param=exc.param)
        if len(self._jobs) >= 1 + self.max_queue:
            self._busy += 1
            raise EngineBusy(f"embedded engine busy: {len(self._jobs)} requests running or queued")
        try:
            job = await asyncio.get_running_loop().run_in_executor(prep, self._prepare, loaded, request)
        except oai.InvalidRequest as exc:
            return _error_response(str(exc), param=exc.param)
        if self._state is not _State.READY:
            raise EngineUnavailable("the embedded engine closed")
        # Admission is re-checked: others may have been admitted while we tokenized.
        if len(self._jobs) >= 1 + self.max_queue:
            self._busy += 1
            raise EngineBusy(f"embedded engine busy: {len(self._jobs)} requests running or queued")
        events: asyncio.Queue[Event] = asyncio.Queue()
        self._submit(executor, loaded, job, events)
        self._requests += 1
        id_, created = oai.new_id(endpoint), int(time.time())
        if request.stream:
            return EngineResponse(
                status=200,
                headers=SSE_HEADERS,
                body=self._stream(request, events, job, id_, created),
                on_close=_setter(job.cancel),
            )
        try:
            return await self._collect(request, events, id_, created)
        except BaseException:
            job.cancel.set()  # the job releases its slot when its thread returns
            raise

    def _submit(
        self, executor: ThreadPoolExecutor, loaded: _Loaded, job: GenerationJob, events: asyncio.Queue[Event]
    ) -> None:
        loop = asyncio.get_running_loop()

        def emit(event: Event) -> None:
            try:
                loop.call_soon_threadsafe(events.put_nowait, event)
            except RuntimeError:  # loop closed: nobody is listening any more
                job.cancel.set()

        future = loop.run_in_executor(
            executor, run_generation, cast(TokenModel, loaded.llama), loaded.end_tokens, job, emit
        )
        self._jobs[future] = job.cancel
        self._idle.clear()

        def done(f: asyncio.Future[Finished | Failed]) -> None:
            self._jobs.pop(f, None)
            if not self._jobs:
                self._idle.set()
            if f.cancelled():
                return
            final = f.result()
            if isinstance(final, Finished) and final.cancelled:
                self._cancelled += 1

        future.add_done_callback(done)

    def _prepare(self, loaded: _Loaded, request: oai.SamplingRequest) -> GenerationJob:
        """Render and tokenize the prompt (any thread: tokenizing only reads the vocabulary)."""
        llama = loaded.llama
        echo_text: str | None = None
        stops = list(request.stop)
        if request.endpoint is Endpoint.CHAT:
            if loaded.chat_format is None:
                raise oai.InvalidRequest("this model has no chat template; use /v1/completions")
            try:
                rendered = loaded.chat_format(messages=[dict(m) for m in request.messages])
            except Exception as exc:  # template errors (e.g. a role it refuses) are the caller's fault
                raise oai.InvalidRequest(f"cannot apply the chat template: {exc}", param="messages") from exc
            tokens = llama.tokenize(
                rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True
            )
        elif isinstance(request.prompt, str):
            tokens = llama.tokenize(request.prompt.encode("utf-8"), add_bos=True, special=True)
            echo_text = request.prompt if request.echo else None
        else:
            tokens = list(request.prompt)
            if any(t >= loaded.n_vocab for t in tokens):
                raise oai.InvalidRequest(f"token ids must be < {loaded.n_vocab}", param="prompt")
            if request.echo:
                echo_text = llama.detokenize(tokens).decode("utf-8", "replace")
        if not tokens:
            bos = llama.token_bos()
            if bos < 0:
                raise oai.InvalidRequest("empty prompt", param="prompt")
            tokens = [bos]
        room = self.n_ctx - len(tokens)
        if room <= 0:
            raise oai.InvalidRequest(
                f"this model's maximum context length is {self.n_ctx} tokens; the prompt has {len(tokens)}",
                param="messages" if request.endpoint is Endpoint.CHAT else "prompt",
            )
        max_tokens = room if request.max_tokens is None else request.max_tokens
        if max_tokens > room:
            raise oai.InvalidRequest(
                f"this model's maximum context length is {self.n_ctx} tokens; you requested "
                f"{len(tokens) + max_tokens} ({len(tokens)} in the prompt, {max_tokens} to generate)",
                param="max_tokens",
            )
        seed = request.seed if request.seed is not None else self.seed
        if seed is None:
            seed = random.SystemRandom().randrange(1 << 31)
        return GenerationJob(
            prompt_tokens=tuple(tokens),
            max_tokens=max_tokens,
            n=request.n,
            seed=seed % (1 << 32),
            stops=tuple(stops),
            sampling={
                "temp": request.temperature,
                "top_p": request.top_p,
                "top_k": request.top_k,
                "min_p": request.min_p,
                "presence_penalty": request.presence_penalty,
                "frequency_penalty": request.frequency_penalty,
                "repeat_penalty": request.repetition_penalty,
            },
            echo_text=echo_text,
            cancel=threading.Event(),
            ignore_eos=request.ignore_eos,
        )

    async def _collect(
        self, request: oai.SamplingRequest, events: asyncio.Queue[Event], id_: str, created: int
    ) -> EngineResponse:
        texts = [""] * request.n
        reasons = ["length"] * request.n
        while True:
            event = await events.get()
            if isinstance(event, TextDelta):
                texts[event.index] += event.text
            elif isinstance(event, ChoiceDone):
                reasons[event.index] = event.finish_reason
            elif isinstance(event, Finished):
                self._tokens += event.usage.completion_tokens
                if event.cancelled:  # not by our caller (that cancels this coroutine): the engine closed
                    raise EngineUnavailable("the embedded engine closed during generation")
                body = oai.full_response(
                    request.endpoint,
                    id_=id_,
                    created=created,
                    model=self.model_name,
                    choices=list(zip(texts, reasons, strict=True)),
                    usage=event.usage,
                )
                return EngineResponse.from_bytes(status=200, headers=JSON_HEADERS, content=oai.dumps(body))
            else:
                self._failed += 1
                return _error_response(
                    f"generation failed: {type(event.error).__name__}", type_="internal_error", code=500
                )

    async def _stream(
        self,
        request: oai.SamplingRequest,
        events: asyncio.Queue[Event],
        job: GenerationJob,
        id_: str,
        created: int,
    ) -> AsyncIterator[bytes]:
        endpoint, model = request.endpoint, self.model_name
        try:
            if endpoint is Endpoint.CHAT:
                for index in range(request.n):
                    yield oai.sse(
                        oai.chunk(
                            endpoint, id_=id_, created=created, model=model, index=index, role=True, text=""
                        )
                    )
            while True:
                event = await events.get()
                if isinstance(event, TextDelta):
                    yield oai.sse(
                        oai.chunk(
                            endpoint,
                            id_=id_,
                            created=created,
                            model=model,
                            index=event.index,
                            text=event.text,
                        )
                    )
                elif isinstance(event, ChoiceDone):
                    yield oai.sse(
                        oai.chunk(
                            endpoint,
                            id_=id_,
                            created=created,
                            model=model,
                            index=event.index,
                            finish_reason=event.finish_reason,
                        )
                    )
                elif isinstance(event, Finished):
                    self._tokens += event.usage.completion_tokens
                    if event.cancelled and self._state is _State.CLOSED:  # closed under a reader
                        message = "the embedded engine closed during generation"
                        yield oai.sse(oai.error_body(message, type_="service_unavailable", code=503))
                    yield oai.sse(
                        oai.usage_chunk(endpoint, id_=id_, created=created, model=model, usage=event.usage)
                    )
                    yield oai.SSE_DONE
                    return
                else:
                    assert isinstance(event, Failed)
                    self._failed += 1
                    # Status 200 is already sent: report the failure in-band, then end the stream.
                    message = f"generation failed: {type(event.error).__name__}"
                    yield oai.sse(oai.error_body(message, type_="internal_error", code=500))
                    yield oai.SSE_DONE
                    return
        finally:
            job.cancel.set()  # harmless after Finished; stops the token loop otherwise


def _setter(event: threading.Event) -> Callable[[], Any]:
    async def close() -> None:
        event.set()

    return close


def _error_response(
    message: str, *, param: str | None = None, type_: str = "invalid_request_error", code: int = 400
) -> EngineResponse:
    body = oai.error_body(message, type_=type_, param=param, code=code)
    return EngineResponse.from_bytes(status=code, headers=JSON_HEADERS, content=oai.dumps(body))
