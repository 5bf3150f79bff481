"""The embedded engine: llama-cpp-python running a GGUF model in this process.

One llama context serves one generation at a time, so all model work runs on one dedicated thread
(a single-worker executor, FIFO). Requests beyond the running one wait in a bounded queue; when it is
full ``open()`` raises ``EngineBusy`` before any work is done. The token loop checks a cancel flag
between tokens, so closing a response (or cancelling the task awaiting a non-streamed answer) stops
generation within one token.

Before the first token: an idle engine prepares the prompt (template, tokens, grammars) on the
engine thread and generates straight on, so no round trip through the event loop sits between the
two; a busy one prepares beside the running generation, so a request it cannot serve is refused at
once. Events cross to the loop through a :class:`_Mailbox`: one wake-up per batch the loop has not
yet taken, so a token never waits for a later one.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from cocoon.inference import _openai as oai
from cocoon.inference._answer import ChoiceShaper
from cocoon.inference._embedding import Embedder, parse_embedding_request
from cocoon.inference._features import UnsupportedParameter
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
from cocoon.inference._prepare import Loaded, prepare_job
from cocoon.inference._protocol import (
    JSON_HEADERS,
    SSE_HEADERS,
    Endpoint,
    EngineResponse,
    unsupported_response,
)
from cocoon.inference.errors import EngineBusy, EngineUnavailable, ModelError
from cocoon.inference.models import EMBEDDED_MODEL_NAME, embedded_model_path, model_name_from_path
from cocoon.oai.capabilities import EMBEDDED_CAPABILITIES, Capability

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["DEFAULT_MAX_QUEUE", "DEFAULT_N_CTX", "EmbeddedEngine", "EmbeddedStats"]

DEFAULT_N_CTX = 2048
DEFAULT_MAX_QUEUE = 8
_MAX_THREADS = 16


@dataclass(frozen=True, slots=True)
class _Prepared:
    """The engine thread prepared the job and is generating (idle path only)."""


@dataclass(frozen=True, slots=True)
class _Refused:
    """The engine thread could not prepare the job: the request's 400."""

    error: oai.InvalidRequest


_Outcome = Event | _Prepared | _Refused


class _Mailbox:
    """Events from the engine thread to the loop. A post wakes the loop only when no wake-up is
    pending already; the loop then takes every event posted so far (coalescing only what has
    already arrived: the first post of a batch always schedules it)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: deque[_Outcome] = deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self._ready: asyncio.Queue[_Outcome] = asyncio.Queue()

    def post(self, event: _Outcome) -> None:
        """Engine thread. Raises RuntimeError once the loop is closed."""
        with self._lock:
            self._pending.append(event)
            if self._scheduled:
                return
            self._scheduled = True
        self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            taken, self._scheduled = list(self._pending), False
            self._pending.clear()
        for event in taken:
            self._ready.put_nowait(event)

    async def get(self) -> _Outcome:
        return await self._ready.get()


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


class EmbeddedEngine:
    """An :class:`~cocoon.inference.Engine` backed by llama-cpp-python.

    ``model_path`` defaults to the embedded SmolLM2-135M-Instruct GGUF. ``max_queue`` is how many
    requests may wait behind the one generating. ``seed`` makes sampling reproducible for requests
    that bring no ``seed`` of their own (``None``: a fresh random seed per request). ``progress``
    shows a Rich spinner on stderr (or ``console``) while the model loads. With ``embeddings`` it
    also serves ``/v1/embeddings`` from a second instance of the model, loaded on first use.
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
        embeddings: bool = True,
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
        self._loaded: Loaded | None = None
        self._jobs: dict[asyncio.Future[Finished | Failed | None], threading.Event] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._requests = self._cancelled = self._failed = self._busy = self._tokens = 0
        self._load_seconds: float | None = None
        self.capabilities: frozenset[Capability] = (
            EMBEDDED_CAPABILITIES if embeddings else EMBEDDED_CAPABILITIES - {Capability.EMBEDDINGS}
        )
        self._embedder: Embedder | None = None

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
            if Capability.EMBEDDINGS in self.capabilities:
                self._embedder = Embedder(
                    path, n_ctx=min(self.n_ctx, 512), n_threads=self.n_threads, max_queue=self.max_queue
                )
            self._state = _State.READY

    async def _load_with_progress(
        self, loop: asyncio.AbstractEventLoop, executor: ThreadPoolExecutor, path: Path
    ) -> Loaded:
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

    def _load(self, path: Path) -> Loaded:
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
        return Loaded(llama=llama, end_tokens=end_tokens, chat_format=chat_format, n_vocab=n_vocab)

    async def aclose(self) -> None:
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        for cancel in self._jobs.values():
            cancel.set()
        executor, loaded, prep = self._executor, self._loaded, self._prep_executor
        self._executor = self._loaded = self._prep_executor = None
        embedder, self._embedder = self._embedder, None
        if embedder is not None:
            await embedder.aclose()
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
        if endpoint is Endpoint.EMBEDDINGS:
            return await self._embed(loaded, body)
        try:
            request = oai.parse_request(endpoint, body)
        except oai.InvalidRequest as exc:
            return _refusal(exc)
        if len(self._jobs) >= 1 + self.max_queue:
            self._busy += 1
            raise EngineBusy(f"embedded engine busy: {len(self._jobs)} requests running or queued")
        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        prepare = functools.partial(
            prepare_job, loaded, request, n_ctx=self.n_ctx, seed=self.seed, cancel=cancel
        )
        events = _Mailbox(loop)
        if self._jobs:  # another generation runs: prepare beside it (a 400 must not wait for it)
            try:
                job = await loop.run_in_executor(prep, prepare)
            except oai.InvalidRequest as exc:
                return _refusal(exc)
            if self._state is not _State.READY:
                raise EngineUnavailable("the embedded engine closed")
            # Admission is re-checked: others may have been admitted while we tokenized.
            if len(self._jobs) >= 1 + self.max_queue:
                self._busy += 1
                raise EngineBusy(f"embedded engine busy: {len(self._jobs)} requests running or queued")
            self._submit(executor, loaded, lambda: job, events, cancel, announce=False)
        else:  # idle: the engine thread prepares and goes straight on to the first token
            self._submit(executor, loaded, prepare, events, cancel, announce=True)
            try:
                first = await events.get()
            except BaseException:
                cancel.set()
                raise
            if isinstance(first, _Refused):
                return _refusal(first.error)
            if isinstance(first, Failed):
                raise first.error
        self._requests += 1
        id_, created = oai.new_id(endpoint), int(time.time())
        if request.stream:
            return EngineResponse(
                status=200,
                headers=SSE_HEADERS,
                body=self._stream(request, events, cancel, id_, created),
                on_close=_setter(cancel),
            )
        try:
            return await self._collect(request, events, id_, created)
        except BaseException:
            cancel.set()  # the job releases its slot when its thread returns
            raise

    def _submit(
        self,
        executor: ThreadPoolExecutor,
        loaded: Loaded,
        prepare: Callable[[], GenerationJob],
        events: _Mailbox,
        cancel: threading.Event,
        *,
        announce: bool,
    ) -> None:
        """Queue the job on the engine thread. ``prepare`` runs there first; with ``announce`` its
        outcome is posted (``_Prepared``, ``_Refused`` or ``Failed``) before any token."""
        loop = asyncio.get_running_loop()

        def emit(event: _Outcome) -> None:
            try:
                events.post(event)
            except RuntimeError:  # loop closed: nobody is listening any more
                cancel.set()

        def work() -> Finished | Failed | None:
            try:
                job = prepare()
            except oai.InvalidRequest as exc:
                emit(_Refused(exc))
                return None
            except Exception as exc:  # open() raises it, as the prepare pool's future would
                emit(Failed(exc))
                return None
            if announce:
                emit(_Prepared())
            return run_generation(cast(TokenModel, loaded.llama), loaded.end_tokens, job, emit)

        future = loop.run_in_executor(executor, work)
        self._jobs[future] = cancel
        self._idle.clear()

        def done(f: asyncio.Future[Finished | Failed | None]) -> None:
            self._jobs.pop(f, None)
            if not self._jobs:
                self._idle.set()
            if f.cancelled():
                return
            final = f.result()
            if isinstance(final, Finished) and final.cancelled:
                self._cancelled += 1

        future.add_done_callback(done)

    async def _embed(self, loaded: Loaded, body: dict[str, Any]) -> EngineResponse:
        if self._embedder is None:
            return _error_response("this engine serves no embeddings", param="model")
        try:
            request = parse_embedding_request(body, dimensions=loaded.llama.n_embd())
        except oai.InvalidRequest as exc:
            return _refusal(exc)
        self._requests += 1
        answer = await self._embedder.embed(request, model=self.model_name)
        if isinstance(answer, oai.InvalidRequest):
            return _refusal(answer)
        return EngineResponse.from_bytes(status=200, headers=JSON_HEADERS, content=answer)

    async def _collect(
        self, request: oai.SamplingRequest, events: _Mailbox, id_: str, created: int
    ) -> EngineResponse:
        shapers = [ChoiceShaper(request.rules) for _ in range(request.n)]
        reasons = ["length"] * request.n
        while True:
            event = await events.get()
            if isinstance(event, TextDelta):
                shapers[event.index].add(event.text, event.logprobs)
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
                    choices=[shaper.finish(reason) for shaper, reason in zip(shapers, reasons, strict=True)],
                    usage=event.usage,
                )
                return EngineResponse.from_bytes(status=200, headers=JSON_HEADERS, content=oai.dumps(body))
            elif isinstance(event, Failed):  # (_Prepared and _Refused are open()'s, never seen here)
                self._failed += 1
                return _error_response(
                    f"generation failed: {type(event.error).__name__}", type_="internal_error", code=500
                )

    async def _stream(
        self,
        request: oai.SamplingRequest,
        events: _Mailbox,
        cancel: threading.Event,
        id_: str,
        created: int,
    ) -> AsyncIterator[bytes]:
        endpoint, model = request.endpoint, self.model_name
        shapers = [ChoiceShaper(request.rules) for _ in range(request.n)]

        def piece(index: int, **fields: Any) -> bytes:
            return oai.sse(oai.chunk(endpoint, id_=id_, created=created, model=model, index=index, **fields))

        try:
            if endpoint is Endpoint.CHAT:
                for index in range(request.n):
                    yield piece(index, role=True, text="")
            while True:
                event = await events.get()
                if isinstance(event, TextDelta):
                    shaper = shapers[event.index]
                    offset = shaper.text_offset
                    text, logprobs = shaper.add(event.text, event.logprobs)
                    if text or logprobs:
                        yield piece(event.index, text=text, logprobs=logprobs, text_offset=offset)
                elif isinstance(event, ChoiceDone):
                    for part in _choice_end(shapers[event.index], event, piece):
                        yield part
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
                elif isinstance(event, Failed):
                    self._failed += 1
                    # Status 200 is already sent: report the failure in-band, then end the stream.
                    message = f"generation failed: {type(event.error).__name__}"
                    yield oai.sse(oai.error_body(message, type_="internal_error", code=500))
                    yield oai.SSE_DONE
                    return
        finally:
            cancel.set()  # harmless after Finished; stops the token loop otherwise


def _choice_end(shaper: ChoiceShaper, done: ChoiceDone, piece: Callable[..., bytes]) -> list[bytes]:
    """The last chunks of one streamed choice: held text, or its tool calls, then the finish."""
    offset = shaper.text_offset
    held, logprobs = shaper.unsent()
    choice = shaper.finish(done.finish_reason)
    if choice.tool_calls:
        return [
            piece(done.index, tool_calls=choice.tool_calls),
            piece(done.index, finish_reason=choice.finish_reason),
        ]
    parts = [piece(done.index, text=held, logprobs=logprobs, text_offset=offset)] if held else []
    return [*parts, piece(done.index, finish_reason=done.finish_reason)]


def _setter(event: threading.Event) -> Callable[[], Any]:
    async def close() -> None:
        event.set()

    return close


def _error_response(
    message: str, *, param: str | None = None, type_: str = "invalid_request_error", code: int = 400
) -> EngineResponse:
    body = oai.error_body(message, type_=type_, param=param, code=code)
    return EngineResponse.from_bytes(status=code, headers=JSON_HEADERS, content=oai.dumps(body))


def _refusal(exc: oai.InvalidRequest) -> EngineResponse:
    """The 400 for a request this engine cannot serve; unsupported parameters say so in ``code``."""
    if isinstance(exc, UnsupportedParameter):
        return unsupported_response(str(exc), param=exc.param)
    return _error_response(str(exc), param=exc.param)
