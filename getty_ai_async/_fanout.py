"""`generate_many`: fan thousands of prompts out under the pending cap, results as they finish.

A run owns one task group for its lifetime, in a task of its own (started by the first
``__anext__`` or by ``async with``): a feeder reads the input lazily, takes a lease per
prompt and starts its POST through the submission policy; accepted generations go to
the client's poller; a recorder journals each result and hands it to the consumer
through a small memory stream. So a ready outcome never waits for a request in
flight, and a slow consumer stops new submissions (backpressure).

`aclose()`, from any task, stops the feeder at once: POSTs not yet leaving are dropped
(never sent, so a rerun submits them), POSTs already leaving are let finish so their
ids are journaled, and generations already accepted are left to the client's poller,
which returns their leases when the service reports them finished.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypedDict, Unpack

import anyio
import anyio.lowlevel
from anyio.abc import ObjectReceiveStream, TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

from ._background import BackgroundTask, ki_protected, spawn
from ._journal import Journal, JournalRecord, RecordState
from ._lease import Limiter
from ._limiter import MaxPending, PendingLimiter
from ._models import Generation, GenerationRequest
from ._reconcile import find_in_history
from ._resource import build, check_positive
from ._routes import ROUTES
from ._sending import SendAborted
from ._submission import SubmitState, submit
from .errors import (
    APIStatusError,
    GettyAIError,
    JournalError,
    LimiterUnavailableError,
    RateLimitError,
    RecordedError,
    SubmissionUncertainError,
    ValidationError,
)

if TYPE_CHECKING:
    from ._client import AsyncGettyAI

__all__ = ["GenerationOutcome", "GenerationRun", "RequestLike", "RunOptions", "RunStats"]

log = logging.getLogger("getty_ai_async.run")

RequestLike = str | Mapping[str, Any] | GenerationRequest

_END = object()


@dataclass(frozen=True, slots=True)
class GenerationOutcome:
    """The result of one input of `generate_many`: a generation or an error."""

    index: int
    """Position of the input in the iterable (0-based)."""
    key: str
    """The journal key: the input's own ``key`` or one derived from index and request."""
    request: GenerationRequest | None
    """The validated request (None when the input itself was invalid)."""
    generation: Generation | None = None
    error: BaseException | None = None
    attempts: int = 0
    """POSTs sent for this input (more than one after 429s)."""
    submitted_at: float | None = None
    """Wall-clock time of the first POST (None when nothing was sent)."""
    finished_at: float = field(default_factory=time.time)
    replayed: bool = False
    """True when the outcome comes from the journal of an earlier run."""
    note: str | None = None
    """Something the caller should know, e.g. that the journal could not record it."""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def generation_request_id(self) -> str | None:
        return self.generation.generation_request_id if self.generation else None

    @property
    def elapsed(self) -> float | None:
        """Seconds from the first POST to the result."""
        return None if self.submitted_at is None else self.finished_at - self.submitted_at


class RunOptions(TypedDict, total=False):
    """Keyword options of `generate_many`."""

    max_pending: MaxPending | None
    """A cap for this run, on top of the client's (an int, or "auto")."""
    journal: str | os.PathLike[str] | None
    """SQLite file recording every step: rerun the same call to resume."""
    return_exceptions: bool
    """Errors become outcomes (default); False stops at the first and raises it."""
    poll_interval: float | None
    """Seconds between polls of one pending generation (default: the client's)."""
    timeout: float | None
    """Polling deadline per generation (default: the client's `wait_timeout`)."""
    retry_failed: bool
    """Resubmit inputs the journal recorded as failed (refused for sure)."""
    retry_uncertain: bool
    """Look inputs of unknown fate up in the history again; resubmit those not there."""


@dataclass(slots=True)
class RunStats:
    """Live counters of a run, for progress displays."""

    read: int = 0
    submitted: int = 0
    in_flight: int = 0
    """POSTs leaving or sent and not answered yet."""
    pending: int = 0
    """Generations accepted and not finished, that this run waits for."""
    done: int = 0
    failed: int = 0
    blocked: int = 0
    """Generations whose every image was blocked by policy."""
    replayed: int = 0
    rate_limited: int = 0
    polls: int = 0
    """Polls the client sent while this run was going (all of the client's ids)."""
    adopted: int = 0
    """Generations found in the history after their POST's reply was lost."""
    uncertain: int = 0
    """Inputs whose POST may have created a generation the history does not show."""
    typical_seconds: float | None = None
    """Learned: half of the generations take less than this (from acceptance to result)."""
    first_poll_after: float | None = None
    """Learned: a new generation is first polled this long after acceptance (adaptive)."""


@dataclass(slots=True, eq=False)
class _Item:
    index: int
    key: str
    request: GenerationRequest | None
    attempts: int = 0
    submitted_at: float | None = None
    scope: anyio.CancelScope | None = None
    leaving: bool = False
    """Its POST started leaving (the journal says so): let it finish when stopping."""
    subscription: tuple[str, object] | None = None
    note: str | None = None


def _error_record(error: BaseException) -> dict[str, Any]:
    return {
        "kind": type(error).__name__,
        "message": str(error),
        "status_code": getattr(error, "status_code", None),
    }


def _unwrap(error: BaseException) -> BaseException:
    """The one exception inside (nested) groups of one; the first leaf otherwise.

    The others, if any, are logged: a caller sees one error, never a group.
    """
    while isinstance(error, BaseExceptionGroup):
        for other in error.exceptions[1:]:
            log.error("also failed: %r", other, exc_info=other)
        error = error.exceptions[0]
    return error


class GenerationRun:
    """Async iterator of `GenerationOutcome`s in completion order (see `generate_many`)."""

    def __init__(
        self,
        client: AsyncGettyAI,
        requests: Iterable[RequestLike] | AsyncIterable[RequestLike] | Iterable[str],
        **options: Unpack[RunOptions],
    ) -> None:
        unknown = set(options) - set(RunOptions.__annotations__)
        if unknown:
            raise ValidationError(min(unknown), "not an option of generate_many")
        limiters: list[Limiter] = []
        max_pending = options.get("max_pending")
        if max_pending is not None:
            try:
                limiters.append(PendingLimiter(max_pending))
            except ValueError as exc:
                raise ValidationError("max_pending", str(exc)) from None
        limiters.append(client.limiter)
        poll_interval = options.get("poll_interval")
        timeout = options.get("timeout")
        journal = options.get("journal")
        self._return_exceptions = options.get("return_exceptions", True)
        # The engine holds no reference to this object, so dropping a run without
        # closing it (a `break`) lets `__del__` stop the engine.
        self._engine = _Engine(
            client,
            requests,
            limiters=limiters,
            journal=Journal(Path(journal)) if journal is not None else None,
            interval=check_positive(
                "poll_interval", client.poll_interval if poll_interval is None else poll_interval
            ),
            timeout=check_positive("timeout", client.wait_timeout if timeout is None else timeout),
            retry_failed=options.get("retry_failed", False),
            retry_uncertain=options.get("retry_uncertain", False),
        )
        self.stats = self._engine.stats

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> GenerationOutcome:
        engine = self._engine
        try:
            outcome = await engine.next_outcome()
        except StopAsyncIteration:
            raise
        except BaseException:
            engine.request_stop()
            raise
        if outcome.error is not None and not self._return_exceptions:
            await self.aclose()
            raise outcome.error
        return outcome

    async def aclose(self) -> None:
        """Stop: nothing new is sent, the journal is closed; accepted work goes on.

        Returns once no POST of this run can leave any more. Generations already
        accepted stay with the client's poller (their leases return when they finish)
        and stay pending in the journal, so a rerun picks them up.
        """
        await self._engine.stop()

    async def __aenter__(self) -> Self:
        self._engine.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            # Possibly after its event loop closed: nothing left to stop then.
            with contextlib.suppress(Exception):
                engine.request_stop()
                engine.close_receiving()

    @property
    def limit(self) -> int:
        """The pending cap in force now (the tightest of the run's and the client's)."""
        return min(limiter.statistics().limit for limiter in self._engine.limiters)


class _Engine:
    """Everything a run does, in its own task; see the module docstring."""

    def __init__(
        self,
        client: AsyncGettyAI,
        requests: Iterable[Any] | AsyncIterable[Any],
        *,
        limiters: list[Limiter],
        journal: Journal | None,
        interval: float,
        timeout: float,
        retry_failed: bool,
        retry_uncertain: bool,
    ) -> None:
        self.client = client
        self.limiters = limiters
        self.journal = journal
        self.interval = interval
        self.timeout = timeout
        self.retry_failed = retry_failed
        self.retry_uncertain = retry_uncertain
        self.stats = RunStats()
        self._source: Iterator[Any] | AsyncIterator[Any] | ObjectReceiveStream[Any] = (
            requests
            if isinstance(requests, ObjectReceiveStream)
            else aiter(requests)
            if isinstance(requests, AsyncIterable)
            else iter(requests)
        )
        self._counter = itertools.count()
        self._given_keys: set[str] = set()
        self._occurrences: collections.Counter[str] = collections.Counter()
        self._open = 0
        """Inputs read whose outcome the consumer has not taken yet."""
        self._input_done = False
        self._submitting: set[_Item] = set()
        self._watching: set[_Item] = set()
        self._arrivals: deque[tuple[_Item, Generation | BaseException | GenerationOutcome]] = (
            deque()
        )
        self._task: BackgroundTask | None = None
        self._receive: MemoryObjectReceiveStream[GenerationOutcome] | None = None
        self._stopping = False
        self._closed = False
        self._final: BaseException | None = None
        self._journal_failed: JournalError | None = None
        self._limiter_failed: LimiterUnavailableError | None = None
        self._polls_at_start = 0

    # ------------------------------------------------------------ consumer side

    def start(self) -> None:
        if self._task is not None or self._closed:
            return
        # Unbounded, but never holding more than the cap: the feeder counts outcomes
        # not taken yet against it. So journaling a result and handing it over are
        # one step, and what a stopped run had ready can still be taken.
        self._send, self._receive = anyio.create_memory_object_stream[GenerationOutcome](math.inf)
        self._arrived = anyio.Event()
        self._changed = anyio.Event()
        self._feed_scope = anyio.CancelScope()
        self._polls_at_start = self.client._poller.polls
        self._task = spawn(self._main, name="getty-ai run")

    async def next_outcome(self) -> GenerationOutcome:
        self.start()
        if self._task is None or self._receive is None:
            raise StopAsyncIteration
        try:
            outcome = await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._receive.close()
        else:
            self._open -= 1
            self._notify()
            return outcome
        await self._task.wait()
        final, self._final = self._final, None
        if final is not None:
            raise final
        raise StopAsyncIteration

    def close_receiving(self) -> None:
        """The consumer is gone: drop what it did not take."""
        if self._receive is not None:
            self._receive.close()

    def request_stop(self) -> None:
        """Stop submitting now (callable from synchronous code and any task)."""
        if self._task is None:
            self._closed = True
            if self.journal is not None:
                self.journal.close()
            return
        if self._stopping:
            return
        self._stopping = True
        if self.journal is not None:
            self.journal.closing = True
        self._feed_scope.cancel()
        for item in self._submitting:
            if not item.leaving and item.scope is not None:
                item.scope.cancel()
        self._notify()

    async def stop(self) -> None:
        """Stop, and return once nothing of this run can send anything any more.

        POSTs already on the wire are waited for (their ids are kept); if the caller
        is cancelled meanwhile, they are cut off too (the journal has them as sent,
        so a rerun looks them up in the history).
        """
        self.request_stop()
        if self._task is None:
            return
        try:
            await self._task.wait()
        except BaseException:
            self._task.cancel()
            with anyio.CancelScope(shield=True):
                await self._task.wait()
            raise

    # --------------------------------------------------------------- the task

    @ki_protected
    async def _main(self) -> None:
        try:
            if self.journal is not None:
                await self.journal.open()
            async with anyio.create_task_group() as group:
                group.start_soon(self._feed, group)
                group.start_soon(self._record)
                await self._until_done_or_stopped()
                group.cancel_scope.cancel()
            if self._journal_failed is not None:
                self._final = self._journal_failed
            elif self._limiter_failed is not None:
                self._final = self._limiter_failed
        except BaseException as exc:
            error = _unwrap(exc)
            if isinstance(error, Exception):
                self._final = error
            else:
                raise
        finally:
            self._finish()

    def _finish(self) -> None:
        self._closed = True
        for item in list(self._watching):
            self._unsubscribe(item)
        if self.journal is not None:
            self.journal.close()
        self._send.close()
        self.stats.polls = self.client._poller.polls - self._polls_at_start

    async def _until_done_or_stopped(self) -> None:
        while not (self._stopping or (self._input_done and self._open == 0)):
            await self._changed.wait()
        if self._stopping:
            # POSTs already leaving finish, so their ids are journaled (the rest were
            # cancelled by `request_stop`); results already in are journaled and
            # handed over: no network, just the journal.
            while self._arrivals or any(item.leaving for item in self._submitting):
                await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    # ---------------------------------------------------------------- feeding

    @ki_protected
    async def _feed(self, group: TaskGroup) -> None:
        with self._feed_scope:
            # Nothing more is sent without a journal, or without leases.
            while self._journal_failed is None and self._limiter_failed is None:
                # An outcome the consumer has not taken yet counts like a generation in
                # flight: a consumer that falls behind stops new submissions.
                while self._open >= self._room_for():
                    await self._changed.wait()
                try:
                    raw = await self._next_input()
                except Exception as error:
                    # The caller's iterable failed: stop as `aclose()` would (nothing
                    # accepted is lost), then raise its error at the end of the run.
                    self._final = error
                    self.request_stop()
                    break
                if raw is _END:
                    break
                await self._take(raw, group)
        self._input_done = not self._stopping
        self._notify()

    def _room_for(self) -> int:
        """How many inputs may be open: the limit, plus a few waiting for a lease so that
        a slot freed goes straight to the next submission, not after the consumer took
        the result that freed it. Outcomes the consumer has not taken yet use up those
        few first: a consumer that falls behind still stops new submissions."""
        limit = min(limiter.statistics().limit for limiter in self.limiters)
        untaken = len(self._arrivals)
        if self._receive is not None:
            untaken += self._receive.statistics().current_buffer_used
        return limit + max(0, max(1, limit // 8) - untaken)

    async def _next_input(self) -> object:
        """The next input, or `_END`."""
        source = self._source
        try:
            if isinstance(source, ObjectReceiveStream):
                return await source.receive()
            if isinstance(source, AsyncIterator):
                return await anext(source)
            await anyio.lowlevel.checkpoint()
            return next(source)
        except (StopIteration, StopAsyncIteration, anyio.EndOfStream):
            return _END

    async def _take(self, raw: object, group: TaskGroup) -> None:
        index = next(self._counter)
        self.stats.read += 1
        self._open += 1
        try:
            key, request = self._parse(raw, index)
        except ValidationError as error:
            key = str((raw.get("key") if isinstance(raw, Mapping) else None) or index)
            self._emit(_Item(index, key, None), error)
            return
        item = _Item(index, key, request)
        record = await self.journal.lookup(key) if self.journal is not None else None
        if record is None:
            self._start_submit(item, group)
            return
        item.attempts = record.attempts
        state = record.state
        if state is RecordState.PENDING and record.generation_request_id:
            await self._resume(item, record.generation_request_id)
        elif state is RecordState.SUBMITTING or (
            state is RecordState.UNKNOWN and self.retry_uncertain
        ):
            group.start_soon(self._look_up, item, record, group)
        elif state is RecordState.FAILED and self.retry_failed:
            assert self.journal is not None
            await self.journal.forget(key)
            item.attempts = 0
            self._start_submit(item, group)
        else:
            self._replay(item, record)

    def _parse(self, raw: object, index: int) -> tuple[str, GenerationRequest]:
        if isinstance(raw, GenerationRequest):
            return self._key_for(index, raw), raw
        if isinstance(raw, str):
            request = build(GenerationRequest, prompt=raw)
            return self._key_for(index, request), request
        if isinstance(raw, Mapping):
            fields = dict(raw)
            key = fields.pop("key", None)
            request = build(GenerationRequest, **fields)
            if key is None:
                return self._key_for(index, request), request
            # Two inputs sharing one key would share a journal record.
            if str(key) in self._given_keys:
                raise ValidationError("key", f"duplicate key {key!r}")
            self._given_keys.add(str(key))
            return str(key), request
        raise ValidationError(
            "requests",
            f"item {index} is a {type(raw).__name__}; expected str, dict or GenerationRequest",
        )

    def _key_for(self, index: int, request: GenerationRequest) -> str:
        """A journal key from what the input asks for, not where it stands.

        With a journal, the n-th occurrence of the same request gets ``<digest>#n``, so
        adding, removing or reordering lines between runs re-pays nothing; without
        one, the index is enough (and costs no memory per distinct request).
        """
        digest = hashlib.sha256(json.dumps(request.to_body(), sort_keys=True).encode()).hexdigest()[
            :20
        ]
        if self.journal is None:
            return f"{index}:{digest[:16]}"
        self._occurrences[digest] += 1
        return f"{digest}#{self._occurrences[digest]}"

    def _replay(self, item: _Item, record: JournalRecord) -> None:
        result: Generation | GettyAIError
        if record.state is RecordState.DONE and record.result is not None:
            result = Generation.model_validate(record.result)
        elif record.state is RecordState.UNKNOWN:
            result = SubmissionUncertainError(item.key, "recorded by an earlier run")
        else:
            recorded = record.error or {}
            result = RecordedError(
                str(recorded.get("kind", "Error")),
                str(recorded.get("message", "")),
                recorded.get("status_code"),
            )
        self.stats.replayed += 1
        self._emit(item, result, replayed=True)

    async def _resume(self, item: _Item, generation_request_id: str) -> None:
        """A generation an earlier run left pending: it holds leases again until it ends."""
        poller = self.client._poller
        if poller.is_tracked(generation_request_id):
            leases = []  # this client polls it already, leases and all
        else:
            leases = [
                (limiter, await limiter.adopt(generation_request_id)) for limiter in self.limiters
            ]
        poller.track(generation_request_id, leases, accepted=False)
        self._subscribe(item, generation_request_id)

    async def _claim(self, generation_request_id: str) -> bool:
        """Take an id found in the history, unless this journal or client has it."""
        if self.journal is not None and await self.journal.knows(generation_request_id):
            return False
        return self.client._poller.claim(generation_request_id)

    @ki_protected
    async def _look_up(self, item: _Item, record: JournalRecord, group: TaskGroup) -> None:
        """An earlier run's POST that got no reply: adopt its generation or say so."""
        assert self.journal is not None
        assert item.request is not None
        found = await find_in_history(
            self.client.history,
            item.request.to_body(),
            sent_at=record.sent_at or record.updated,
            claim=self._claim,
            grace=self.client.history_grace,
        )
        if found is not None:
            self.stats.adopted += 1
            await self.journal.update(item.key, RecordState.PENDING, generation_request_id=found)
            await self._resume(item, found)
        elif self.retry_uncertain:
            await self.journal.forget(item.key)
            self._start_submit(item, group)
        else:
            error = SubmissionUncertainError(
                item.key, "an earlier run sent it and got no reply", history_checked=True
            )
            await self.journal.update(item.key, RecordState.UNKNOWN, error=_error_record(error))
            self.stats.uncertain += 1
            self._emit(item, error)

    # ------------------------------------------------------------- submitting

    def _start_submit(self, item: _Item, group: TaskGroup) -> None:
        # Each submit takes its lease in its own task (in `submit`): with a shared
        # limiter a lease costs a round trip, and the feeder must not wait for one before
        # reading the next input. At most the cap's worth of inputs and a few more are
        # open (see `_feed`), so at most that many wait for a lease, first come first
        # served.
        item.scope = anyio.CancelScope()
        self._submitting.add(item)
        group.start_soon(self._submit, item)

    @ki_protected
    async def _submit(self, item: _Item) -> None:
        assert item.request is not None
        assert item.scope is not None
        journal = self.journal
        body = item.request.to_body()
        state = SubmitState(label=item.key, attempts=item.attempts)

        async def leaving() -> None:
            if self._stopping:
                raise SendAborted
            # From here on `request_stop` lets this POST finish rather than cut it off.
            item.leaving = True
            self.stats.in_flight += 1
            if journal is not None:
                await journal.submitting(item.key, item.index, body, state.attempts)
            self.stats.submitted += 1

        def settled() -> None:
            if item.leaving:
                item.leaving = False
                self.stats.in_flight -= 1
                self._notify()
            if self._stopping and item.scope is not None:
                item.scope.cancel()  # answered "nothing created" while stopping: no retry

        state.on_answered = settled
        try:
            with item.scope:
                generation = await submit(
                    self.client,
                    ROUTES["generate"],
                    body,
                    state=state,
                    limiters=self.limiters,
                    on_sent=leaving,
                    claim=self._claim,
                )
                await self._accepted(item, state, generation)
                return
            # Cancelled by `request_stop` while no POST of it was out: if an earlier
            # attempt was refused (a 429), its "sent" mark says nothing any more.
            if journal is not None and state.first_sent_at is not None:
                with anyio.CancelScope(shield=True):
                    await self._forget(item)
        except SendAborted:
            pass  # stopped before it left: nothing was sent, nothing to record
        except SubmissionUncertainError as error:
            self.stats.uncertain += 1
            await self._failed(item, state, error, RecordState.UNKNOWN)
        except JournalError as error:
            self._journal_broke(error)
            await self._failed(item, state, error, None)
        except GettyAIError as error:
            if isinstance(error, LimiterUnavailableError):
                self._limiter_broke(error)
            if journal is not None and state.first_sent_at is not None:
                if isinstance(error, RateLimitError | LimiterUnavailableError):
                    # Nothing was created (the account was busy, or no lease could be
                    # had to try again): a rerun submits it as if never sent.
                    await self._forget(item)
                    await self._failed(item, state, error, None)
                else:
                    await self._failed(item, state, error, RecordState.FAILED)
            else:
                await self._failed(item, state, error, None)
        except Exception as error:
            # A bug of ours must cost one outcome, never the run.
            log.exception("submitting input %s failed", item.key)
            await self._failed(item, state, GettyAIError(f"unexpected {error!r}"), None)
        except BaseException:
            # Cut off with the run: if its last POST was answered "nothing created",
            # its "sent" mark says nothing any more; if not, a rerun looks it up.
            if journal is not None and state.first_sent_at is not None and not state.sent:
                with anyio.CancelScope(shield=True):
                    await self._forget(item)
            raise
        finally:
            self.stats.rate_limited += state.rate_limited
            settled()
            self._submitting.discard(item)
            self._notify()

    async def _accepted(self, item: _Item, state: SubmitState, generation: Generation) -> None:
        item.attempts = state.attempts
        item.submitted_at = state.first_sent_at
        if state.adopted:
            self.stats.adopted += 1
        generation_request_id = generation.generation_request_id
        if not generation.is_pending:
            for limiter, lease in state.leases:
                await limiter.release(lease, finished=True)
            await self._write(item, RecordState.DONE, result=generation.model_dump(mode="json"))
            self._emit(item, generation)
            return
        # Tracked first, so the leases go back whatever happens next; subscribed after
        # the journal says pending, so its "done" can never be overwritten by that.
        self.client._poller.track(generation_request_id, state.leases)
        await self._write(item, RecordState.PENDING, generation_request_id=generation_request_id)
        if not self._stopping:
            self._subscribe(item, generation_request_id)

    async def _failed(
        self, item: _Item, state: SubmitState, error: GettyAIError, record: RecordState | None
    ) -> None:
        item.attempts = state.attempts
        item.submitted_at = state.first_sent_at
        if record is not None:
            await self._write(item, record, error=_error_record(error))
        self._emit(item, error)

    async def _write(self, item: _Item, state: RecordState, **fields: Any) -> None:
        """Journal a step; if the journal fails, say so on the outcome and stop submitting."""
        if self.journal is None:
            return
        try:
            await self.journal.update(item.key, state, **fields)
        except JournalError as error:
            log.error("journal write failed for input %s: %s", item.key, error)
            item.note = f"not recorded in the journal: {error}"
            self._journal_broke(error)

    async def _forget(self, item: _Item) -> None:
        assert self.journal is not None
        try:
            await self.journal.forget(item.key)
        except JournalError as error:
            self._journal_broke(error)

    def _limiter_broke(self, error: LimiterUnavailableError) -> None:
        """No lease can be had (Redis is gone): stop submitting; accepted work goes on."""
        if self._limiter_failed is None:
            log.error("stopping submissions: %s", error)
            self._limiter_failed = error
            self._feed_scope.cancel()

    def _journal_broke(self, error: JournalError) -> None:
        if self._journal_failed is None:
            self._journal_failed = error
            self._feed_scope.cancel()

    # -------------------------------------------------------- results arriving

    def _subscribe(self, item: _Item, generation_request_id: str) -> None:
        self.stats.pending += 1
        handle = self.client._poller.subscribe(
            generation_request_id,
            lambda result: self._on_result(item, result),
            timeout=self.timeout,
            interval=self.interval,
        )
        if handle is not None:
            item.subscription = (generation_request_id, handle)
            self._watching.add(item)

    def _unsubscribe(self, item: _Item) -> None:
        if item.subscription is not None:
            self.client._poller.unsubscribe(*item.subscription)
            item.subscription = None

    def _on_result(self, item: _Item, result: Generation | BaseException) -> None:
        item.subscription = None
        self._watching.discard(item)
        stats = self.stats
        stats.pending -= 1
        poller = self.client._poller
        stats.typical_seconds = poller.durations().quantile(0.5)
        stats.first_poll_after = poller.first_poll_after()
        self._arrivals.append((item, result))
        self._arrived.set()

    def _emit(
        self,
        item: _Item,
        result: Generation | BaseException,
        *,
        replayed: bool = False,
    ) -> None:
        self._arrivals.append((item, self._outcome(item, result, replayed=replayed)))
        self._arrived.set()

    @ki_protected
    async def _record(self) -> None:
        """Journal each result as it arrives and hand it to the consumer, in order."""
        while True:
            while not self._arrivals:
                self._arrived = anyio.Event()
                await self._arrived.wait()
            item, arrival = self._arrivals[0]
            if isinstance(arrival, GenerationOutcome):
                self._hand_over(arrival)
            else:
                await self._record_result(item, arrival)
            self._arrivals.popleft()
            self._notify()

    def _hand_over(self, outcome: GenerationOutcome) -> None:
        stats = self.stats
        if outcome.error is not None:
            stats.failed += 1
        else:
            stats.done += 1
            if outcome.generation is not None and not outcome.generation.images:
                stats.blocked += 1
        self._send.send_nowait(outcome)

    async def _record_result(self, item: _Item, result: Generation | BaseException) -> None:
        if isinstance(result, Generation):
            await self._write(item, RecordState.DONE, result=result.model_dump(mode="json"))
        elif isinstance(result, APIStatusError) and result.status_code in (404, 410):
            # Gone is final. Anything else (a timeout, 401, a malformed reply) may pass,
            # and the generation is paid for: the journal keeps it pending for a rerun.
            await self._write(item, RecordState.FAILED, error=_error_record(result))
        self._hand_over(self._outcome(item, result))

    @staticmethod
    def _outcome(
        item: _Item, result: Generation | BaseException, *, replayed: bool = False
    ) -> GenerationOutcome:
        return GenerationOutcome(
            index=item.index,
            key=item.key,
            request=item.request,
            generation=result if isinstance(result, Generation) else None,
            error=result if isinstance(result, BaseException) else None,
            attempts=item.attempts,
            submitted_at=item.submitted_at,
            replayed=replayed,
            note=item.note,
        )
