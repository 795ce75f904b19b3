"""One poller per client: every pending generation it knows of, polled by one task.

Whatever creates or resumes a generation registers its id here with the leases it holds
(`track`); whoever wants the result subscribes (`subscribe`, `wait`). One background
task spreads the polls (each id about once per interval; polls due at once leave over a
tenth of an interval, not in a burst; the cost of a tick does not grow with the number
pending) and keeps polling ids nobody waits for any
more, so their leases return when the service reports them finished, not when a caller
stops listening. The task starts with the first id and ends with the last one.

With the ``"adaptive"`` strategy it also learns how long each kind of generation takes
(`PollTiming`) and aims a new one's first poll where it will most likely be done, then
polls every interval: polls are most of the requests an account sends, and most of them
would only hear "still pending".
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Literal, TypeVar

import anyio
import pydantic

from ._background import BackgroundTask, ki_protected, spawn
from ._durations import DurationEstimate, PollTiming
from ._lease import Lease, Limiter
from ._models import Generation
from ._routes import ROUTES
from .errors import (
    APIConnectionError,
    ClientClosedError,
    GenerationTimeoutError,
    GettyAIError,
    GoneError,
    InternalServerError,
    MalformedResponseError,
    NotFoundError,
    RateLimitError,
)

if TYPE_CHECKING:
    import httpx

    from ._transport import Transport

__all__ = ["Deliver", "PollStrategy", "Poller", "parse_generation"]

log = logging.getLogger("getty_ai_async.poller")

Result = Generation | BaseException
Deliver = Callable[[Result], None]
"""Called once with the finished generation, or the error that ended the wait."""

# Ids seen lately, so that a lost POST never adopts a generation this client already
# has; history lookups go back half a minute, so a few minutes' worth is plenty.
_KNOWN_IDS = 10_000

T = TypeVar("T")

# A 200 reply that is not what the API documents may be a passing hiccup of a proxy:
# after this many in a row, the generation ends with that error.
_MALFORMED_IN_A_ROW = 3

# Polls due at once leave over at most 1/_SPREAD of an interval.
_SPREAD = 10

# A generation waiting for the first of its kind to teach when to poll it (adaptive) is
# polled meanwhile all the same, in case they never do: first after this many intervals,
# then each time its age has doubled (it is seen at most about twice its age late).
_UNAIMED_FIRST = 4

# A sample teaches only if the poll that saw it finished left close to when it was due,
# and close to the poll before it: within half an interval, or a quarter of the time
# since acceptance. One held up longer (a backlog in a QPS budget, a stalled event loop)
# says when it was let go, not how long the generation took.
_ON_TIME = 0.5
_LATE_SHARE = 0.25

PollStrategy = Literal["adaptive", "fixed"]


def parse_generation(response: httpx.Response) -> Generation:
    """A `Generation` from a 200/202 reply; `MalformedResponseError` if it is not one."""
    pending = response.status_code == 202
    try:
        # One pass in pydantic-core, about half the cost of json.loads then validation.
        # Whatever it refuses takes the long way below: the same verdict and message.
        return Generation.from_json(response.content, pending=pending)
    except pydantic.ValidationError:
        pass  # the long way below gives the same verdict with a readable message
    try:
        body = response.json()
    except ValueError:
        raise MalformedResponseError(response, "not JSON") from None
    try:
        return Generation.from_response(body, pending=pending)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise MalformedResponseError(response, f"{where}: {first['msg']}") from None


class _Subscriber:
    __slots__ = ("deadline", "deliver", "started")

    def __init__(self, deliver: Deliver, started: float, deadline: float) -> None:
        self.deliver = deliver
        self.started = started
        self.deadline = deadline


class _Entry:
    __slots__ = (
        "accepted_at",
        "awaiting_aim",
        "deadline",
        "due",
        "generation_request_id",
        "interval",
        "kind",
        "last_error",
        "last_sent",
        "leases",
        "malformed",
        "polled_due",
        "sample",
        "sequence",
        "subscribers",
        "tracked_at",
    )

    def __init__(self, generation_request_id: str, interval: float, kind: str) -> None:
        self.generation_request_id = generation_request_id
        self.kind = kind
        self.sample = False
        self.awaiting_aim = False
        self.leases: list[tuple[Limiter, Lease]] = []
        self.subscribers: list[_Subscriber] = []
        self.interval = interval
        self.due = 0.0
        self.polled_due = 0.0
        self.sequence = 0
        self.deadline = math.inf
        self.accepted_at: float | None = None
        self.tracked_at = 0.0
        self.malformed = 0
        self.last_error: GettyAIError | None = None
        self.last_sent: float | None = None


class _Box:
    __slots__ = ("event", "result")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.result: Result | None = None

    def deliver(self, result: Result) -> None:
        self.result = result
        self.event.set()


class Poller:
    """The registry of a client's pending generations and the task that polls them."""

    def __init__(
        self,
        transport: Transport,
        *,
        interval: float,
        lease_timeout: float,
        not_found_grace: float,
        strategy: PollStrategy = "adaptive",
    ) -> None:
        self._transport = transport
        self.strategy = strategy
        self._timings: dict[str, PollTiming] = {}
        self.interval = interval
        self.lease_timeout = lease_timeout
        """Give up on an id (and return its leases) this long after it was accepted."""
        self.not_found_grace = not_found_grace
        """A 404 this soon after the service accepted the id is taken as transient."""
        self._entries: dict[str, _Entry] = {}
        self._schedule: list[tuple[float, int, str]] = []
        self._sequence = itertools.count()
        self._last_dispatch = -math.inf
        self._asleep_until = -math.inf
        """When the polling task wakes by itself (-inf while it runs: it reads the
        schedule before it sleeps again)."""
        self._changed = anyio.Event()
        self._task: BackgroundTask | None = None
        self._helpers: set[BackgroundTask] = set()
        self._waits: set[anyio.CancelScope] = set()
        self._posts_out: collections.Counter[str] = collections.Counter()
        self._posts_changed = anyio.Event()
        self._settling = 0
        """Tasks waiting in `posts_settled`."""
        self._closed = False
        self._known: dict[str, None] = {}
        self._awaiting_aim = 0
        """Entries whose first poll waits for their kind's first samples (adaptive)."""
        self.polls = 0
        """Polls sent so far (every id, every caller)."""

    # ------------------------------------------------------------------ reading

    @property
    def closed(self) -> bool:
        return self._closed

    async def unless_closed(self, awaitable: Awaitable[T]) -> T:
        """Await `awaitable`; `ClientClosedError` if the client closes meanwhile."""
        with anyio.CancelScope() as scope:
            self._waits.add(scope)
            try:
                return await awaitable
            finally:
                self._waits.discard(scope)
        raise ClientClosedError()

    def post_leaving(self, fingerprint: str) -> None:
        """A creating POST of this body started leaving."""
        self._posts_out[fingerprint] += 1

    def post_answered(self, fingerprint: str) -> None:
        """A creating POST of this body got its answer (or error)."""
        self._posts_out[fingerprint] -= 1
        if self._posts_out[fingerprint] <= 0:
            del self._posts_out[fingerprint]
        # Woken only when someone waits: a new Event per answer costs every submit.
        if self._settling:
            self._posts_changed.set()
            self._posts_changed = anyio.Event()

    async def posts_settled(self, fingerprint: str, timeout: float) -> None:
        """Return once no POST of this body is out (or after `timeout`)."""
        with anyio.move_on_after(timeout):
            while self._posts_out[fingerprint] > 0:  # a Counter: reading adds no key
                self._settling += 1
                try:
                    await self._posts_changed.wait()
                finally:
                    self._settling -= 1

    @property
    def pending(self) -> int:
        """Generations being polled now."""
        return len(self._entries)

    def is_tracked(self, generation_request_id: str) -> bool:
        return generation_request_id in self._entries

    def is_known(self, generation_request_id: str) -> bool:
        """Whether this client has seen the id (tracked now or in the recent past)."""
        return generation_request_id in self._known

    def durations(self, kind: str = "generate") -> DurationEstimate:
        """What this client learned of how long generations of `kind` (a route) take."""
        return self._timing(kind).durations

    def _timing(self, kind: str) -> PollTiming:
        timing = self._timings.get(kind)
        if timing is None:
            timing = self._timings[kind] = PollTiming()
        return timing

    def claim(self, generation_request_id: str) -> bool:
        """Remember an id as this client's; False if it was known already."""
        if generation_request_id in self._known:
            return False
        self._remember(generation_request_id)
        return True

    # -------------------------------------------------------------- registering

    def track(
        self,
        generation_request_id: str,
        leases: Iterable[tuple[Limiter, Lease]] = (),
        *,
        accepted: bool = True,
        kind: str = "generate",
    ) -> None:
        """Poll `generation_request_id` until it ends; its `leases` go back then.

        `accepted` says this client saw the service accept it just now (a 404 soon
        after is then taken as the service catching up, and its duration is learned).
        The first poll comes after one interval, or (adaptive) when earlier ones of its
        `kind` say it will most likely be done.
        """
        self._remember(generation_request_id)
        if self._closed:
            return  # a POST answered after the close: its id goes to whoever waits
        now = anyio.current_time()
        entry = self._entries.get(generation_request_id)
        if entry is None:
            entry = _Entry(generation_request_id, self.interval, kind)
            entry.tracked_at = now
            wait, entry.sample = self._first_wait(kind, accepted)
            self._entries[generation_request_id] = entry
            if wait is None:
                entry.awaiting_aim = True
                self._awaiting_aim += 1
                wait = _UNAIMED_FIRST * self.interval
            self._reschedule(entry, now + wait)
        entry.leases.extend(leases)
        if entry.leases:
            entry.deadline = min(entry.deadline, now + self.lease_timeout)
        if accepted and entry.accepted_at is None:
            entry.accepted_at = now
        self._start()

    def subscribe(
        self,
        generation_request_id: str,
        deliver: Deliver,
        *,
        timeout: float,
        interval: float | None = None,
        poll_now: bool = False,
    ) -> object:
        """Call `deliver` once with the result, or `GenerationTimeoutError` after `timeout`.

        Returns a handle for `unsubscribe`. An id not tracked yet is tracked (without
        leases) for as long as someone waits for it.
        """
        if self._closed:
            deliver(ClientClosedError(generation_request_id))
            return None
        if generation_request_id not in self._entries:
            self.track(generation_request_id, accepted=False)
        entry = self._entries[generation_request_id]
        now = anyio.current_time()
        subscriber = _Subscriber(deliver, now, now + timeout)
        entry.subscribers.append(subscriber)
        if interval is not None and interval < entry.interval:
            entry.interval = interval
            if entry.awaiting_aim and entry.due != math.inf:
                self._reschedule(
                    entry, min(entry.due, entry.tracked_at + _UNAIMED_FIRST * interval)
                )
        # The last poll comes at the deadline, even when it is shorter than an interval.
        # (While a poll is out, its answer comes first: no second poll beside it.)
        when = now if poll_now else min(entry.due, subscriber.deadline)
        if when < entry.due and entry.due != math.inf:
            self._reschedule(entry, when)
        return subscriber

    def unsubscribe(self, generation_request_id: str, handle: object) -> None:
        entry = self._entries.get(generation_request_id)
        if entry is not None and handle in entry.subscribers:
            entry.subscribers.remove(handle)

    async def wait(
        self,
        generation_request_id: str,
        *,
        timeout: float,
        interval: float | None = None,
        immediate: bool = False,
    ) -> Generation:
        """Wait for the generation's result (`GenerationTimeoutError` after `timeout`)."""
        box = _Box()
        handle = self.subscribe(
            generation_request_id,
            box.deliver,
            timeout=timeout,
            interval=interval,
            poll_now=immediate,
        )
        try:
            await box.event.wait()
        finally:
            self.unsubscribe(generation_request_id, handle)
        if isinstance(box.result, BaseException):
            raise box.result
        assert box.result is not None
        return box.result

    def spawn(self, body: Callable[[], Awaitable[None]], name: str) -> None:
        """Run `body` in the background until it ends or the client closes."""
        if self._closed:
            return
        task: BackgroundTask

        async def run() -> None:
            try:
                await body()
            finally:
                self._helpers.discard(task)

        task = spawn(run, name=name)
        self._helpers.add(task)

    async def aclose(self) -> None:
        """Stop polling; whoever still waits gets `ClientClosedError` naming the id.

        Leases are left to their limiter (they expire unless refreshed).
        """
        self._closed = True
        for scope in self._waits:
            scope.cancel()
        tasks = [task for task in (self._task, *self._helpers) if task is not None]
        self._task = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            await task.wait()
        entries, self._entries = self._entries, {}
        self._schedule.clear()
        self._awaiting_aim = 0
        for entry in entries.values():
            for subscriber in entry.subscribers:
                subscriber.deliver(ClientClosedError(entry.generation_request_id))

    # ------------------------------------------------------------------ polling

    def first_poll_after(self, kind: str = "generate") -> float | None:
        """When a new generation of `kind` is first polled (adaptive, once learned)."""
        if self.strategy != "adaptive":
            return None
        return self._timing(kind).ready_after()

    def _first_wait(self, kind: str, accepted: bool) -> tuple[float | None, bool]:
        """How long until the first poll (None: until its kind's first samples say), and
        whether the finish is a sample to learn."""
        if not accepted:
            return self.interval, False  # no acceptance time: nothing to learn from
        if self.strategy != "adaptive":
            return self.interval, True
        return self._timing(kind).first_poll(self.interval)

    def _learn(self, entry: _Entry, sent_at: float, previous: float | None) -> None:
        """The poll sent at `sent_at` saw the generation finished; the one before it
        (sent at `previous`, if any) had found it pending."""
        if entry.accepted_at is None or not entry.sample:
            return
        seen_after = sent_at - entry.accepted_at
        # A first poll's phase was drawn from the interval.
        gap = entry.interval if previous is None else sent_at - previous
        held_up = max(sent_at - entry.polled_due, gap - entry.interval)
        # (Written so that a NaN from a clock gone wrong teaches nothing either.)
        if not held_up <= max(_ON_TIME * entry.interval, _LATE_SHARE * seen_after):
            return  # `_drop` counts it as a sample lost
        entry.sample = False
        timing = self._timing(entry.kind)
        timing.finished(seen_after, gap)
        if self._awaiting_aim:
            self._aim_waiting(entry.kind, timing.ready_after())

    def _aim_waiting(self, kind: str, aim: float | None) -> None:
        """Its kind was just learned: poll those that waited for it when they are due."""
        if aim is None:
            return
        now = anyio.current_time()
        for entry in self._entries.values():
            if entry.awaiting_aim and entry.kind == kind:
                self._stop_awaiting_aim(entry)
                if entry.due == math.inf:
                    continue  # a poll is out: its answer reschedules at the usual cadence
                assert entry.accepted_at is not None  # only accepted ones wait for an aim
                when = max(now, entry.accepted_at + aim)
                if when < entry.due:
                    self._reschedule(entry, when)

    def _stop_awaiting_aim(self, entry: _Entry) -> None:
        if entry.awaiting_aim:
            entry.awaiting_aim = False
            self._awaiting_aim -= 1

    def _remember(self, generation_request_id: str) -> None:
        self._known[generation_request_id] = None
        if len(self._known) > _KNOWN_IDS:
            del self._known[next(iter(self._known))]

    def _reschedule(self, entry: _Entry, when: float) -> None:
        entry.due = when
        entry.sequence = next(self._sequence)
        heapq.heappush(self._schedule, (when, entry.sequence, entry.generation_request_id))
        # Most polls are due after the one the task sleeps for: waking it for those would
        # cost a turn of the event loop per poll for nothing.
        if when < self._asleep_until:
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _start(self) -> None:
        # A task that died with its event loop (a client used again under a new one)
        # is replaced.
        if self._task is None or self._task.done:
            self._task = spawn(self._run, name="getty-ai poller")

    @ki_protected
    async def _run(self) -> None:
        refresh_at = anyio.current_time()
        async with anyio.create_task_group() as polls:
            while self._entries:
                now = anyio.current_time()
                if now >= refresh_at:
                    refresh_at = now + self._refresh_every()
                    polls.start_soon(self._refresh)
                entry = self._next_due()
                if entry is None:
                    await self._wait_for_change(refresh_at - now)
                    continue
                # Polls due together (generations accepted together finish together)
                # leave spread over a tenth of an interval: no burst, and none is late
                # by more than that. (Under a QPS budget a poll is not queued ahead of
                # its time: a turn taken early would hold back submissions behind it,
                # each holding a lease while it waits.)
                spacing = entry.interval / (_SPREAD * len(self._entries))
                at = max(entry.due, self._last_dispatch + spacing)
                if at > now:
                    await self._wait_for_change(min(at, refresh_at) - now)
                    continue
                heapq.heappop(self._schedule)
                self._last_dispatch = max(at, now - spacing)
                entry.polled_due, entry.due = entry.due, math.inf
                polls.start_soon(self._poll, entry)
            # Decided with no await since the check: a `track` from now on starts a new task.
            self._task = None

    def _next_due(self) -> _Entry | None:
        """The entry whose poll is due first, dropping stale schedule items."""
        while self._schedule:
            _, sequence, generation_request_id = self._schedule[0]
            entry = self._entries.get(generation_request_id)
            if entry is not None and entry.sequence == sequence and entry.due != math.inf:
                return entry
            heapq.heappop(self._schedule)
        return None

    async def _wait_for_change(self, timeout: float) -> None:
        timeout = max(0.0, timeout)
        self._asleep_until = anyio.current_time() + timeout
        try:
            with anyio.move_on_after(timeout):
                await self._changed.wait()
        finally:
            self._asleep_until = -math.inf

    def _refresh_every(self) -> float:
        ttls = [
            limiter.lease_ttl for entry in self._entries.values() for limiter, _ in entry.leases
        ]
        return min(ttls, default=30.0) / 3

    @ki_protected
    async def _refresh(self) -> None:
        """Keep the leases of every pending generation alive, one call per limiter."""
        by_limiter: dict[int, tuple[Limiter, list[Lease]]] = {}
        for entry in self._entries.values():
            for limiter, lease in entry.leases:
                by_limiter.setdefault(id(limiter), (limiter, []))[1].append(lease)
        for limiter, leases in by_limiter.values():
            try:
                await limiter.refresh(leases)
            except Exception:
                log.warning("could not refresh %d leases", len(leases), exc_info=True)

    @ki_protected
    async def _poll(self, entry: _Entry) -> None:
        generation_request_id = entry.generation_request_id
        self.polls += 1
        transport = self._transport
        path = ROUTES["get_generation"].path(generation_request_id=generation_request_id)
        # What a poll sees is the service's state when it leaves: under a QPS budget,
        # after its turn, which the transport reports.
        departed: list[float] = []
        sent_at = anyio.current_time()
        try:
            request = transport.http.build_request("GET", transport.endpoint(path))
            if transport.budget is None:
                response = await transport.send(request)
            else:

                async def stamp() -> None:
                    departed.append(anyio.current_time())

                response = await transport.send(request, on_sent=stamp)
            generation = parse_generation(response)
        except (NotFoundError, GoneError) as exc:
            if isinstance(exc, NotFoundError) and self._maybe_catching_up(entry):
                entry.last_error = exc  # the service may not know an id it just accepted
            else:
                await self._end(entry, exc, finished=True)
                return
        except (APIConnectionError, InternalServerError, RateLimitError) as exc:
            entry.last_error = exc
        except MalformedResponseError as exc:
            entry.last_error = exc
            # A 202 alone says "still pending": its body has nothing we need.
            if exc.status_code != 202:
                entry.malformed += 1
                if entry.malformed >= _MALFORMED_IN_A_ROW:
                    # A 200 says the service is done with it, even if we cannot read what
                    # it made: holding its lease would only shrink the cap until it expired.
                    await self._end(entry, exc, finished=True)
                    return
        except GettyAIError as exc:
            # 401, 403, another 4xx: the waiters hear it, but the service still has the
            # generation as far as we know: it keeps its lease until it ends or expires.
            entry.last_error = exc
            self._fail_waiters(entry, exc)
        except Exception as exc:
            log.exception("polling %s failed", generation_request_id)
            entry.last_error = GettyAIError(f"polling failed: {exc!r}")
        else:
            entry.malformed = 0
            sent_at = departed[0] if departed else sent_at
            previous, entry.last_sent = entry.last_sent, sent_at
            if not generation.is_pending:
                self._learn(entry, sent_at, previous)
                await self._end(entry, generation, finished=True)
                return
        await self._after_pending_poll(entry)

    def _maybe_catching_up(self, entry: _Entry) -> bool:
        """A 404 on an id believed to exist, soon after it was accepted or resumed."""
        if not entry.leases and entry.accepted_at is None:
            return False  # an id someone asked about: a 404 is an answer
        since = entry.accepted_at if entry.accepted_at is not None else entry.tracked_at
        return anyio.current_time() - since < self.not_found_grace

    def _fail_waiters(self, entry: _Entry, error: GettyAIError) -> None:
        subscribers, entry.subscribers = entry.subscribers, []
        for subscriber in subscribers:
            subscriber.deliver(error)

    async def _after_pending_poll(self, entry: _Entry) -> None:
        now = anyio.current_time()
        for subscriber in [s for s in entry.subscribers if s.deadline <= now]:
            entry.subscribers.remove(subscriber)
            subscriber.deliver(self._timeout(entry, subscriber.started, now))
        if now >= entry.deadline:
            # Never finished (as far as we can tell): give the leases back. A journal
            # still has the id as pending, so a rerun looks again.
            await self._end(entry, None, finished=False)
            return
        if not entry.leases and not entry.subscribers:
            self._drop(entry)  # nobody waits and nothing to give back
            return
        if entry.awaiting_aim and entry.accepted_at is not None:
            when = now + max(entry.interval, now - entry.accepted_at)
        else:
            # Keep the cadence of the first poll rather than drifting by each poll's latency.
            when = max(entry.polled_due + entry.interval, now)
        # The last poll comes at the earliest deadline: a waiter's, or the lease's.
        soonest = min((s.deadline for s in entry.subscribers), default=entry.deadline)
        self._reschedule(entry, min(when, max(min(soonest, entry.deadline), now)))

    def _timeout(self, entry: _Entry, started: float, now: float) -> GenerationTimeoutError:
        error = GenerationTimeoutError(entry.generation_request_id, now - started)
        error.__cause__ = entry.last_error
        return error

    def _drop(self, entry: _Entry) -> None:
        if self._entries.get(entry.generation_request_id) is entry:
            del self._entries[entry.generation_request_id]
            self._stop_awaiting_aim(entry)
            if entry.sample:
                entry.sample = False
                self._timing(entry.kind).lost()
            if not self._entries:
                self._wake()  # the last one gone: the task ends now, not at its next tick

    async def _end(self, entry: _Entry, result: Result | None, *, finished: bool) -> None:
        """The generation ended: leases back first (room for the next), then the result.

        A `result` of None ends each wait with a `GenerationTimeoutError`.
        """
        self._drop(entry)
        leases, entry.leases = entry.leases, []
        for limiter, lease in leases:
            try:
                await limiter.release(lease, finished=finished)
            except Exception:
                log.warning("could not release a lease", exc_info=True)
        subscribers, entry.subscribers = entry.subscribers, []
        now = anyio.current_time()
        for subscriber in subscribers:
            subscriber.deliver(
                self._timeout(entry, subscriber.started, now) if result is None else result
            )
