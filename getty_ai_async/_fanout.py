"""`generate_many`: fan thousands of prompts out under the pending cap, results as they finish.

The run owns no task between two outcomes. Each `__anext__` runs a short-lived task
group (a submitter loop, a poll scheduler and one task per HTTP request) until at least
one outcome is ready, stops starting requests, lets the requests in flight finish, and
returns. So breaking out of ``async for`` leaves nothing running, and a slow consumer
pauses submissions: backpressure for free. The slots of generations still pending go
back on `aclose()` (``async with run:`` calls it), or as soon as the run is dropped.
Generations still pending between two outcomes keep their slots and are polled again on
the next step.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import os
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypedDict, Unpack

import anyio
from anyio.abc import ObjectReceiveStream, TaskGroup

from ._journal import Journal, JournalRecord, RecordState
from ._limiter import MaxPending, PendingLimiter, Slot
from ._models import Generation, GenerationRequest
from ._resource import build, check_positive
from ._routes import ROUTES, validate_id
from ._transport import retry_after_seconds
from .errors import (
    APIConnectionError,
    APIStatusError,
    GenerationTimeoutError,
    GettyAIError,
    InternalServerError,
    RateLimitError,
    RecordedError,
    SubmissionUncertainError,
    ValidationError,
)

if TYPE_CHECKING:
    from ._client import AsyncGettyAI

__all__ = ["GenerationOutcome", "GenerationRun", "RequestLike", "RunOptions", "RunStats"]

RequestLike = str | Mapping[str, Any] | GenerationRequest

# Statuses on a poll that end this run's polling of a generation; anything else (429,
# 5xx, a dropped connection) is retried at the next poll until the deadline.
_FINAL_POLL_STATUSES = frozenset({400, 401, 403, 404, 410})


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


@dataclass(slots=True)
class RunStats:
    """Live counters of a run, for progress displays."""

    read: int = 0
    submitted: int = 0
    in_flight: int = 0
    """POSTs sent and not answered yet (their fate is unknown if the process dies now)."""
    pending: int = 0
    done: int = 0
    failed: int = 0
    blocked: int = 0
    """Generations whose every image was blocked by policy."""
    replayed: int = 0
    rate_limited: int = 0
    polls: int = 0


@dataclass(slots=True, eq=False)
class _Item:
    index: int
    key: str
    request: GenerationRequest | None
    generation_request_id: str | None = None
    needs_slot: bool = True
    slots: list[tuple[PendingLimiter, Slot]] = field(default_factory=list)
    attempts: int = 0
    submitted_at: float | None = None
    started: float = 0.0
    deadline: float = 0.0
    due: float = 0.0
    not_before: float = 0.0
    refusals: int = 0
    early: bool = False
    """After a 429 without Retry-After: may retry before `not_before` when room is made."""


def _error_record(error: BaseException) -> dict[str, Any]:
    return {
        "kind": type(error).__name__,
        "message": str(error),
        "status_code": getattr(error, "status_code", None),
    }


def _may_have_created(error: GettyAIError) -> bool:
    """Whether a failed POST may still have created a generation (so: never resubmit it)."""
    if isinstance(error, APIConnectionError):
        return error.may_have_been_sent
    # A gateway timeout may hide a request the service went on to process.
    return isinstance(error, APIStatusError) and error.status_code == 504


def _key_for(index: int, request: GenerationRequest) -> str:
    digest = hashlib.sha256(json.dumps(request.to_body(), sort_keys=True).encode()).hexdigest()
    return f"{index}:{digest[:16]}"


class GenerationRun:
    """Async iterator of `GenerationOutcome`s in completion order (see `generate_many`)."""

    # Until __init__ completes there is nothing to shut down (see __del__).
    _closed = True

    def __init__(
        self,
        client: AsyncGettyAI,
        requests: Iterable[RequestLike] | AsyncIterable[RequestLike] | Iterable[str],
        *,
        _resume_ids: bool = False,
        **options: Unpack[RunOptions],
    ) -> None:
        max_pending = options.get("max_pending")
        journal = options.get("journal")
        poll_interval = options.get("poll_interval")
        timeout = options.get("timeout")
        unknown = set(options) - set(RunOptions.__annotations__)
        if unknown:
            raise ValidationError(min(unknown), "not an option of generate_many")
        self._client = client
        self._generations = client.generations
        self._policy = client._transport.policy
        self._limiters = [client.limiter]
        if max_pending is not None:
            try:
                self._limiters.insert(0, PendingLimiter(max_pending))
            except ValueError as exc:
                raise ValidationError("max_pending", str(exc)) from None
        self._journal = Journal(Path(journal)) if journal is not None else None
        self._journal_opened = False
        self._return_exceptions = options.get("return_exceptions", True)
        self._interval = check_positive(
            "poll_interval", client.poll_interval if poll_interval is None else poll_interval
        )
        self._timeout = check_positive(
            "timeout", client.wait_timeout if timeout is None else timeout
        )
        self._retry_failed = options.get("retry_failed", False)
        self._resume_ids = _resume_ids
        self._sync_input: Iterator[Any] | None = None
        self._async_input: AsyncIterator[Any] | None = None
        self._stream_input: ObjectReceiveStream[Any] | None = None
        self._input_wait: anyio.CancelScope | None = None
        if isinstance(requests, ObjectReceiveStream):
            self._stream_input = requests
        elif isinstance(requests, AsyncIterable):
            self._async_input = aiter(requests)
        else:
            self._sync_input = iter(requests)
        self._counter = itertools.count()
        self._given_keys: set[str] = set()
        self._input_exhausted = False
        self._held: _Item | None = None
        self._retries: deque[_Item] = deque()
        self._submitting: set[_Item] = set()
        self._pending: set[_Item] = set()
        self._schedule: list[tuple[float, int, _Item]] = []
        self._sequence = itertools.count()
        self._last_poll = 0.0
        self._inflight = 0
        self._ready: deque[GenerationOutcome] = deque()
        self._changed = anyio.Event()
        self._wake = anyio.Event()
        self._stopping = False
        self._room = 0
        for limiter in self._limiters:
            limiter.subscribe(self._slot_released)
        self.stats = RunStats()
        self._closed = False

    # ------------------------------------------------------------------- iterator

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> GenerationOutcome:
        if self._closed and not self._ready:
            raise StopAsyncIteration
        try:
            if self._journal is not None and not self._journal_opened:
                await self._journal.open()
                self._journal_opened = True
            while not self._ready:
                if self._finished():
                    await self.aclose()
                    raise StopAsyncIteration
                await self._step()
        except BaseException:
            self._shutdown()
            raise
        outcome = self._ready.popleft()
        if outcome.error is not None and not self._return_exceptions:
            await self.aclose()
            raise outcome.error
        return outcome

    async def aclose(self) -> None:
        """Stop: nothing new is sent, every slot is returned, the journal is closed.

        Generations still pending stay recorded in the journal, so a rerun resumes them.
        """
        self._shutdown()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # Abandoned after `break` without aclose(): still give the slots back.
        self._shutdown()

    @property
    def limit(self) -> int:
        """The pending cap in force now (the tightest of the run's and the client's)."""
        return min(limiter.limit for limiter in self._limiters)

    # ----------------------------------------------------------------- one step

    async def _step(self) -> None:
        self._wake = anyio.Event()
        self._stopping = False
        # Once an outcome is ready the loops are asked to stop (not cancelled: a cancelled
        # task leaves a reference cycle that would keep this run, and its slots, alive
        # after a `break`), and `requests` waits for the HTTP calls in flight, so no POST
        # is ever cut off between send and reply.
        async with anyio.create_task_group() as requests:
            requests.start_soon(self._submitter, requests)
            requests.start_soon(self._poller, requests)
            await self._wake.wait()

    def _finished(self) -> bool:
        return (
            self._input_exhausted
            and self._held is None
            and not self._retries
            and not self._submitting
            and not self._pending
            and self._inflight == 0
        )

    def _notify(self) -> None:
        if self._ready or self._finished():
            # Stop starting work at once; the step returns when the calls in flight end.
            self._stopping = True
            self._wake.set()
            if self._input_wait is not None:
                self._input_wait.cancel()
        self._changed.set()
        self._changed = anyio.Event()

    def _emit(self, outcome: GenerationOutcome) -> None:
        stats = self.stats
        if outcome.replayed:
            stats.replayed += 1
        if outcome.error is not None:
            stats.failed += 1
        else:
            stats.done += 1
            if outcome.generation is not None and not outcome.generation.images:
                stats.blocked += 1
        self._ready.append(outcome)
        self._notify()

    def _outcome(
        self,
        item: _Item,
        *,
        generation: Generation | None = None,
        error: BaseException | None = None,
        replayed: bool = False,
    ) -> GenerationOutcome:
        return GenerationOutcome(
            index=item.index,
            key=item.key,
            request=item.request,
            generation=generation,
            error=error,
            attempts=item.attempts,
            submitted_at=item.submitted_at,
            replayed=replayed,
        )

    # --------------------------------------------------------------- submitting

    async def _submitter(self, requests: TaskGroup) -> None:
        while not self._stopping:
            item = self._held or await self._next_item()
            if item is None:
                if self._input_exhausted and not self._retries and not self._submitting:
                    self._notify()
                    return
                continue
            # Held across the wait for a slot, so a step ending meanwhile loses nothing.
            self._held = item
            if item.needs_slot and not item.slots:
                slots = await self._acquire_slots()
                if slots is None:
                    return
                item.slots = slots
            self._held = None
            if item.generation_request_id is not None:
                self._track_pending(item, first_poll=anyio.current_time())
                continue
            self._inflight += 1
            self._submitting.add(item)
            self.stats.in_flight = len(self._submitting)
            requests.start_soon(self._submit, item)

    async def _next_item(self) -> _Item | None:
        """A 429'd item whose wait is over, else the next input; None when there's nothing now."""
        if self._retries:
            head = self._retries[0]
            delay = head.not_before - anyio.current_time()
            if delay > 0:
                if not (head.early and self._room):
                    await self._wait_for_change(delay)
                    return None
                self._room -= 1
            return self._retries.popleft()
        if self._input_exhausted:
            if self._submitting:
                await self._changed.wait()
            return None
        return await self._read_input()

    async def _read_input(self) -> _Item | None:
        try:
            if self._stream_input is not None:
                # A stream's receive() can be interrupted without losing an item, so a
                # quiet stream never holds back outcomes that are ready (see _notify).
                with anyio.CancelScope() as self._input_wait:
                    raw = await self._stream_input.receive()
                if self._input_wait.cancelled_caught:
                    return None
            elif self._async_input is not None:
                # Any other async iterator would end if interrupted mid-item, so the step
                # waits for it: a source that blocks for long delays outcomes meanwhile.
                raw = await anext(self._async_input)
            else:
                assert self._sync_input is not None
                raw = next(self._sync_input)
        except (StopIteration, StopAsyncIteration, anyio.EndOfStream):
            self._input_exhausted = True
            return None
        finally:
            self._input_wait = None
        index = next(self._counter)
        self.stats.read += 1
        try:
            if self._resume_ids:
                generation_request_id = validate_id("generation_request_id", raw)
                return _Item(
                    index=index,
                    key=generation_request_id,
                    request=None,
                    generation_request_id=generation_request_id,
                    needs_slot=False,
                )
            key, request = self._parse(raw, index)
            if isinstance(raw, Mapping) and "key" in raw:
                # Only caller-given keys can collide (derived ones include the index);
                # two inputs sharing one would share a journal record.
                if key in self._given_keys:
                    raise ValidationError("key", f"duplicate key {key!r}")
                self._given_keys.add(key)
        except ValidationError as error:
            key = str((raw.get("key") if isinstance(raw, Mapping) else None) or index)
            self._emit(GenerationOutcome(index=index, key=key, request=None, error=error))
            return None
        item = _Item(index=index, key=key, request=request)
        if self._journal is None:
            return item
        record = await self._journal.lookup(key)
        return await self._from_record(item, record) if record is not None else item

    @staticmethod
    def _parse(raw: object, index: int) -> tuple[str, GenerationRequest]:
        if isinstance(raw, GenerationRequest):
            return _key_for(index, raw), raw
        if isinstance(raw, str):
            request = build(GenerationRequest, prompt=raw)
            return _key_for(index, request), request
        if isinstance(raw, Mapping):
            fields = dict(raw)
            key = fields.pop("key", None)
            request = build(GenerationRequest, **fields)
            return (str(key) if key is not None else _key_for(index, request)), request
        raise ValidationError(
            "requests",
            f"item {index} is a {type(raw).__name__}; expected str, dict or GenerationRequest",
        )

    async def _from_record(self, item: _Item, record: JournalRecord) -> _Item | None:
        """Replay, resume or resubmit an input the journal has seen before."""
        assert self._journal is not None
        item.attempts = record.attempts
        state = record.state
        if state is RecordState.PENDING and record.generation_request_id:
            item.generation_request_id = record.generation_request_id
            return item
        if state is RecordState.FAILED and self._retry_failed:
            await self._journal.forget(item.key)
            item.attempts = 0
            return item
        if state is RecordState.SUBMITTING:
            # The last run died between sending the POST and hearing back.
            await self._journal.update(
                item.key, RecordState.UNKNOWN, error={"kind": "SubmissionUncertainError"}
            )
            state = RecordState.UNKNOWN
        generation: Generation | None = None
        error: GettyAIError | None = None
        if state is RecordState.DONE and record.result is not None:
            generation = Generation.model_validate(record.result)
        elif state is RecordState.UNKNOWN:
            error = SubmissionUncertainError(item.key, "recorded by an earlier run")
        else:
            recorded = record.error or {}
            error = RecordedError(
                str(recorded.get("kind", "Error")),
                str(recorded.get("message", "")),
                recorded.get("status_code"),
            )
        self._emit(self._outcome(item, generation=generation, error=error, replayed=True))
        return None

    async def _acquire_slots(self) -> list[tuple[PendingLimiter, Slot]] | None:
        """A slot from every limiter, or None if the step ends first."""
        while not self._stopping:
            taken: list[tuple[PendingLimiter, Slot]] = []
            for limiter in self._limiters:
                slot = limiter.try_acquire()
                if slot is None:
                    for owner, held in taken:
                        owner.release(held)
                    break
                taken.append((limiter, slot))
            else:
                return taken
            await self._wait_for_change(
                min(limiter.seconds_to_parked_expiry() for limiter in self._limiters)
            )
        return None

    def _slot_released(self, slot: Slot) -> None:
        if slot.accepted and self._room < len(self._retries):
            # A generation the service had accepted ended: room for one 429'd submit to
            # try again now. (Slots given back after a 429 or a failed acquire say
            # nothing of the kind, and one end makes room for one submit, not all.)
            self._room += 1
        self._notify()

    async def _wait_for_change(self, timeout: float) -> None:
        with anyio.move_on_after(timeout):
            await self._changed.wait()

    def _release(self, item: _Item) -> None:
        for limiter, slot in item.slots:
            limiter.release(slot)
        item.slots = []

    async def _submit(self, item: _Item) -> None:
        assert item.request is not None
        journal = self._journal
        body = item.request.to_body()
        item.attempts += 1
        now = time.time()
        if item.submitted_at is None:
            item.submitted_at = now
            item.started = anyio.current_time()
        self.stats.submitted += 1

        async def mark_sent() -> None:
            # Recorded as the POST goes on the wire, not before waiting for a token or
            # a turn in the QPS budget: only then can its fate become unknown.
            if journal is not None:
                await journal.submitting(item.key, item.index, body, item.attempts)

        try:
            try:
                response = await self._client._transport.request(
                    ROUTES["generate"], json=body, retry_rate_limits=False, before_send=mark_sent
                )
            except RateLimitError as exc:
                await self._rate_limited(item, exc)
                return
            except GettyAIError as exc:
                if _may_have_created(exc):
                    uncertain = SubmissionUncertainError(item.key, str(exc))
                    await self._fail(item, uncertain, RecordState.UNKNOWN)
                else:
                    # Refused for sure: `retry_failed` may submit it again without paying twice.
                    await self._fail(item, exc, RecordState.FAILED)
                return
            for limiter, slot in item.slots:
                limiter.accepted(slot)
            generation = Generation.from_response(
                response.json(), pending=response.status_code == 202
            )
            if generation.is_pending:
                if journal is not None:
                    await journal.update(
                        item.key,
                        RecordState.PENDING,
                        generation_request_id=generation.generation_request_id,
                    )
                item.generation_request_id = generation.generation_request_id
                self._track_pending(item, first_poll=anyio.current_time() + self._interval)
            else:
                await self._finish(item, generation)
        except BaseException:
            # Cancelled (the run is being torn down): nobody else will hand these back.
            self._release(item)
            raise
        finally:
            self._submitting.discard(item)
            self.stats.in_flight = len(self._submitting)
            self._inflight -= 1
            self._notify()

    async def _rate_limited(self, item: _Item, exc: RateLimitError) -> None:
        for limiter, slot in item.slots:
            limiter.rate_limited(slot)
        self._release(item)
        self.stats.rate_limited += 1
        if self._journal is not None:
            # The 429 proves nothing was created: the input is as good as never sent.
            await self._journal.forget(item.key)
        policy = self._policy
        delay = retry_after_seconds(exc.response, policy.max_retry_after)
        # While generations of ours are pending at the service, their ends will make room:
        # waiting for that is flow control, bounded by max_retry_time only. A 429 with a
        # Retry-After, or with nothing of ours pending (someone else holds the cap), is a
        # failed try like any other.
        if delay is not None or not any(limiter.accepted_count for limiter in self._limiters):
            item.refusals += 1
        waited = anyio.current_time() - item.started
        if (
            policy.max_retries == 0
            or item.refusals > policy.max_retries
            or waited > policy.max_retry_time
        ):
            self._emit(self._outcome(item, error=exc))
            return
        # Without a Retry-After the 429 is most likely the account's pending cap: the best
        # moment to retry is when one of our generations ends. A Retry-After is obeyed.
        item.early = delay is None
        item.not_before = anyio.current_time() + (
            policy.rate_limit_wait if delay is None else delay
        )
        self._retries.append(item)

    async def _finish(self, item: _Item, generation: Generation) -> None:
        self._release(item)
        for limiter in self._limiters:
            limiter.succeeded()
        if self._journal is not None:
            await self._journal.update(
                item.key, RecordState.DONE, result=generation.model_dump(mode="json")
            )
        self._emit(self._outcome(item, generation=generation))

    async def _fail(self, item: _Item, error: GettyAIError, state: RecordState | None) -> None:
        """Emit `error` for `item`; record `state` in the journal unless None."""
        self._release(item)
        if self._journal is not None and state is not None:
            await self._journal.update(item.key, state, error=_error_record(error))
        self._emit(self._outcome(item, error=error))

    # ------------------------------------------------------------------ polling

    def _track_pending(self, item: _Item, *, first_poll: float) -> None:
        assert item.generation_request_id is not None
        if not item.started:
            item.started = anyio.current_time()
        item.deadline = anyio.current_time() + self._timeout
        self._pending.add(item)
        self.stats.pending = len(self._pending)
        self._schedule_poll(item, first_poll)

    def _schedule_poll(self, item: _Item, when: float) -> None:
        item.due = when
        heapq.heappush(self._schedule, (when, next(self._sequence), item))
        self._notify()

    async def _poller(self, requests: TaskGroup) -> None:
        """Dispatch due polls, spaced so N pending ids never poll in one burst."""
        while not self._stopping:
            if not self._schedule:
                await self._changed.wait()
                continue
            due = self._schedule[0][0]
            spacing = self._interval / max(1, len(self._pending))
            at = max(due, self._last_poll + spacing)
            now = anyio.current_time()
            if at > now:
                await self._wait_for_change(at - now)
                continue
            _, _, item = heapq.heappop(self._schedule)
            self._last_poll = max(at, now - spacing)
            self._inflight += 1
            requests.start_soon(self._poll, item)

    async def _poll(self, item: _Item) -> None:
        assert item.generation_request_id is not None
        self.stats.polls += 1
        try:
            try:
                generation = await self._generations.get(item.generation_request_id)
            except APIStatusError as exc:
                if exc.status_code in _FINAL_POLL_STATUSES:
                    self._forget_pending(item)
                    # Gone (404/410) is final. Anything else (401, 403, 400) may pass, and
                    # the generation is paid for: the journal keeps it pending for a rerun.
                    gone = exc.status_code in (404, 410)
                    await self._fail(item, exc, RecordState.FAILED if gone else None)
                    return
                generation = None
            except (APIConnectionError, InternalServerError):
                generation = None
            if generation is not None and not generation.is_pending:
                self._forget_pending(item)
                await self._finish(item, generation)
                return
            now = anyio.current_time()
            if now + self._interval > item.deadline:
                self._forget_pending(item)
                # Left as pending in the journal: a rerun picks the polling up again.
                self._release(item)
                error = GenerationTimeoutError(item.generation_request_id, now - item.started)
                self._emit(self._outcome(item, error=error))
                return
            # Keep the cadence of the first poll rather than drifting by each poll's latency.
            self._schedule_poll(item, max(item.due + self._interval, now))
        finally:
            self._inflight -= 1
            self._notify()

    def _forget_pending(self, item: _Item) -> None:
        self._pending.discard(item)
        self.stats.pending = len(self._pending)

    # ----------------------------------------------------------------- shutdown

    def _shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        for item in (*self._pending, *self._submitting, *self._retries):
            self._release(item)
        if self._held is not None:
            self._release(self._held)
        self._pending.clear()
        self._schedule.clear()
        for limiter in self._limiters:
            limiter.unsubscribe(self._slot_released)
        if self._journal is not None:
            self._journal.close()
