"""`EngineRunner`: the continuous-batching `Engine` on a background thread, streamed to asyncio consumers.

    runner = EngineRunner(Engine(model, tokenizer, max_batch=8), max_queue=64)
    runner.start()
    async for event in runner.stream(prompt_ids, SamplingConfig(max_new_tokens=32, temperature=0), eos_ids):
        ...                                  # TokenEvent(request_id, token_id, finish_reason, logprob, top)
    runner.close()

One thread owns the engine: it drains a command queue (submit, cancel) and calls `engine.step()` while any
request waits or runs, handing each event to its consumer's asyncio queue through
`loop.call_soon_threadsafe`. Consumers never touch the engine, so submitting and cancelling are thread-safe and
never wait for a forward pass. When a consumer stops early (an HTTP client disconnected: the generator is
closed or cancelled), its request is cancelled and its slot freed at the next step. `QueueFull` is raised at
once when accepting a request would put more than `max_queue` requests in the engine (waiting + running): the
server answers 429 instead of queueing without bound.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmlab.config.sampling import SamplingConfig
from llmlab.generate import LogitsProcessor
from llmlab.serve.engine import Engine, TokenEvent


class QueueFull(Exception):
    """The runner holds `max_queue` requests already; retry later (HTTP 429)."""


@dataclass
class _Handle:
    """One consumer's request: where its events go and (once the engine accepted it) its engine id."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    request_id: int | None = None
    done: bool = False

    def deliver(self, item: TokenEvent | BaseException) -> None:
        """Hand an event (or the error that ends the request) to the consumer's loop, from any thread."""
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


class RequestStream:
    """The tokens of one submitted request: `async for event in stream`; `cancel()` drops the request."""

    def __init__(self, runner: EngineRunner, handle: _Handle) -> None:
        self._runner, self._handle = runner, handle

    def __aiter__(self) -> AsyncIterator[TokenEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[TokenEvent]:
        try:
            while True:
                item = await self._handle.queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:  # the consumer stopped early (a client disconnected): free the slot
            self.cancel()

    def cancel(self) -> None:
        """Drop the request from the engine (no-op once it finished)."""
        if not self._handle.done:
            self._runner._command("cancel", self._handle, ())


class EngineRunner:
    """Run `engine.step()` on a background thread; stream each request's tokens to asyncio consumers.

    Args:
        engine: the continuous-batching engine (owned by the runner's thread from `start()` on).
        max_queue: the most requests waiting or running at once (>= 1); beyond it `stream` raises `QueueFull`.
    """

    def __init__(self, engine: Engine, max_queue: int = 64) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1 (got {max_queue})")
        self.engine = engine
        self.max_queue = max_queue
        self._commands: deque[tuple[str, _Handle, tuple[Any, ...]]] = deque()
        self._handles: dict[int, _Handle] = {}  # engine request id -> handle (engine thread only)
        self._wake = threading.Condition()
        self._active = 0  # requests accepted and not finished (guarded by _wake)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.steps = 0  # engine steps run so far (tests and metrics)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> EngineRunner:
        """Start the engine thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="llmlab-engine", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the engine thread; requests still running get a RuntimeError."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    @property
    def active(self) -> int:
        """Requests accepted and not finished yet (waiting + running + about to be submitted)."""
        with self._wake:
            return self._active

    # ------------------------------------------------------------------ consumers
    def stream(
        self,
        prompt_ids: Sequence[int],
        sampling: SamplingConfig,
        eos_ids: Sequence[int] = (),
        processors: Sequence[LogitsProcessor] = (),
        logprobs: int | None = None,
    ) -> RequestStream:
        """Submit a request now; iterate the result (`async for`) for its tokens, the last with a finish_reason.

        Submission is eager, so `QueueFull` is raised here, before a response starts. Call `cancel()` on a
        stream that will not be iterated to the end (iterating and stopping early cancels it too).

        Raises:
            QueueFull: `max_queue` requests are in the engine already (nothing is submitted).
            ValueError (while iterating): the engine refused the request (prompt too long, bad ids, ...).
        """
        handle = self._accept()
        self._command("submit", handle, (list(prompt_ids), sampling, list(eos_ids), tuple(processors), logprobs))
        return RequestStream(self, handle)

    def room(self) -> int:
        """How many more requests `stream` accepts right now."""
        with self._wake:
            return self.max_queue - self._active

    def _accept(self) -> _Handle:
        with self._wake:
            if self._stopping or self._thread is None:
                raise RuntimeError("the engine runner is not running; call start() first")
            if self._active >= self.max_queue:
                raise QueueFull(f"{self._active} requests are queued or running (max_queue={self.max_queue})")
            self._active += 1
        return _Handle(asyncio.get_running_loop())

    def _command(self, kind: str, handle: _Handle, args: tuple[Any, ...]) -> None:
        with self._wake:
            self._commands.append((kind, handle, args))
            self._wake.notify()

    # ------------------------------------------------------------------ engine thread
    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and not self._commands and not self.engine.has_work:
                    self._wake.wait()
                if self._stopping:
                    break
                commands = list(self._commands)
                self._commands.clear()
            for kind, handle, args in commands:
                self._run_command(kind, handle, args)
            if self.engine.has_work:
                self._step()
        error = RuntimeError("the server is shutting down")
        self._fail_all(error)
        with self._wake:
            pending, self._commands = list(self._commands), deque()
        for _, handle, _ in pending:
            self._finish(handle)
            handle.deliver(error)

    def _run_command(self, kind: str, handle: _Handle, args: tuple[Any, ...]) -> None:
        if kind == "submit":
            prompt, sampling, eos_ids, processors, logprobs = args
            try:
                handle.request_id = self.engine.submit(prompt, sampling, eos_ids, processors, logprobs)
            except Exception as error:  # noqa: BLE001 - handed to the consumer, which raises it
                self._finish(handle)
                handle.deliver(error)
                return
            self._handles[handle.request_id] = handle
        elif kind == "cancel" and not handle.done:
            if handle.request_id is not None:
                self.engine.cancel(handle.request_id)
                self._handles.pop(handle.request_id, None)
            self._finish(handle)

    def _step(self) -> None:
        try:
            events = self.engine.step()
        except Exception as error:  # noqa: BLE001 - a failed forward fails the requests in it, not the server
            self._fail_all(RuntimeError(f"decoding failed: {error}"))
            return
        self.steps += 1
        for event in events:
            handle = self._handles.get(event.request_id)
            if handle is None:
                continue
            if event.finish_reason is not None:
                self._handles.pop(event.request_id, None)
                self._finish(handle)
            handle.deliver(event)

    def _fail_all(self, error: BaseException) -> None:
        """End every request in the engine with `error` (and drop them from the engine)."""
        for request_id, handle in list(self._handles.items()):
            self.engine.cancel(request_id)
            self._finish(handle)
            handle.deliver(error)
        self._handles.clear()

    def _finish(self, handle: _Handle) -> None:
        if not handle.done:
            handle.done = True
            with self._wake:
                self._active -= 1
