"""The one submission policy: what a POST that creates a generation does on every answer.

Used by `generations.create` and every other creating call, `client.generate` and
`generate_many` alike. Each attempt holds a lease from every limiter; then:

- **2xx**: the leases are bound to the new generation id (the poller returns them).
- **429**: nothing was created, the leases return at once. Without Retry-After it is
  the account's pending cap: while generations of ours are pending, wait for one of
  them to end (flow control, bounded by the deadline only); otherwise it counts as a
  refused try and waits Retry-After, or about a second with jitter.
- **5xx, timeouts, lost replies**: `POST_FATE` says whether the service may have acted.
  If it may have, the generation is looked up in the history (adopted if found, no
  second charge) and reported as uncertain otherwise; if it cannot have, the POST is
  tried again with exponential backoff.
- **other 4xx**: refused for good.

No wait crosses the deadline (``max_retry_time`` after the first attempt).
"""

from __future__ import annotations

import enum
import hashlib
import inspect
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from ._lease import Lease, Limiter
from ._models import Generation
from ._poller import parse_generation
from ._reconcile import Claim, find_in_history
from ._routes import Route
from ._sending import SendAborted
from ._transport import Deadline, annotate, retry_after_seconds
from .errors import (
    APIConnectionError,
    APIStatusError,
    ClientClosedError,
    GettyAIError,
    MalformedResponseError,
    RateLimitError,
    SubmissionUncertainError,
    TokenUnavailableError,
)

if TYPE_CHECKING:
    from ._client import AsyncGettyAI

__all__ = ["POST_FATE", "Fate", "SubmitState", "acquire_leases", "release_leases", "submit"]

log = logging.getLogger("getty_ai_async.submission")

# The longest a lost POST waits for a twin still out (same route and body) to be answered.
_TWIN_WAIT = 60.0


class Fate(enum.Enum):
    """What an error answer to a creating POST says about the generation."""

    NOT_CREATED = "not created"
    """Safe to send again."""
    REFUSED = "refused"
    """Not created, and sending it again would be refused the same way."""
    MAYBE_CREATED = "maybe created"
    """The service may have acted: look in the history before anything else."""


POST_FATE: Mapping[int, Fate] = {
    408: Fate.NOT_CREATED,  # the server gave up waiting for the request itself
    429: Fate.NOT_CREATED,
    500: Fate.MAYBE_CREATED,  # it failed while handling the request: maybe after creating
    502: Fate.MAYBE_CREATED,  # the upstream's reply was lost, not necessarily its work
    503: Fate.NOT_CREATED,  # unavailable: it declined to take the request
    504: Fate.MAYBE_CREATED,  # the upstream may still be working on it
}
"""Per status, what a POST's error answer says; other 4xx are REFUSED, other 5xx MAYBE."""


def post_fate(status_code: int) -> Fate:
    """What an error status on a creating POST says (see `POST_FATE`)."""
    default = Fate.MAYBE_CREATED if status_code >= 500 else Fate.REFUSED
    return POST_FATE.get(status_code, default)


@dataclass(slots=True)
class SubmitState:
    """What a submission did so far (read by runs for their outcomes and stats)."""

    label: str
    """How errors name the input (a run's key, or the route)."""
    attempts: int = 0
    rate_limited: int = 0
    sent: bool = False
    """The current attempt started leaving and its fate is not settled yet: until the
    answer says nothing was created (a retry follows), or the call ends."""
    first_sent_at: float | None = None
    sent_at: float | None = None
    """Wall-clock time the last attempt started leaving."""
    adopted: bool = False
    """The generation was found in the history after its reply was lost."""
    leases: list[tuple[Limiter, Lease]] = field(default_factory=list)
    on_answered: Callable[[], None] | None = None
    """Called when an attempt that started leaving got its answer (or error)."""

    def answered(self) -> None:
        if self.sent:
            self.sent = False
            if self.on_answered is not None:
                self.on_answered()


async def acquire_leases(limiters: Sequence[Limiter]) -> list[tuple[Limiter, Lease]]:
    """A lease from each limiter, in order; none held if cancelled or failing midway."""
    taken: list[tuple[Limiter, Lease]] = []
    try:
        for limiter in limiters:
            taken.append((limiter, await limiter.acquire()))
    except BaseException:
        with anyio.CancelScope(shield=True):
            await release_leases(taken, pending_cap=False)
        raise
    return taken


async def release_leases(leases: list[tuple[Limiter, Lease]], *, pending_cap: bool) -> None:
    """Hand back leases whose POST created nothing."""
    for limiter, lease in leases:
        await limiter.refused(lease, pending_cap=pending_cap)
    leases.clear()


async def submit(
    client: AsyncGettyAI,
    route: Route,
    body: dict[str, Any],
    *,
    state: SubmitState,
    limiters: Sequence[Limiter],
    path_params: Mapping[str, str | int] | None = None,
    on_sent: Callable[[], Awaitable[None]] | None = None,
    claim: Claim | None = None,
) -> Generation:
    """POST `body` to `route` under the pending cap, per the policy above.

    Returns the generation (pending or not) with `state.leases` bound to it; raises a
    `GettyAIError` otherwise, holding no lease. `on_sent` runs as each attempt starts
    leaving (it may raise `SendAborted`: then nothing leaves, nothing is held). `claim`
    takes an id found in the history for this POST (see `find_in_history`).

    Cancelled after the POST left, it still finds out: the history is searched in the
    background, and a generation found there joins the client's poller with the leases.
    """
    transport = client._transport
    poller = client._poller
    policy = transport.policy
    url = transport.endpoint(route.path(**(path_params or {})))
    deadline = Deadline.after(policy.max_retry_time)
    fingerprint = _fingerprint(route, body)
    refusals = 0
    out = False

    async def sending() -> None:
        nonlocal out
        if poller.closed:
            raise ClientClosedError()
        if on_sent is not None:
            await on_sent()
        state.sent = True
        state.sent_at = time.time()
        if state.first_sent_at is None:
            state.first_sent_at = state.sent_at
        poller.post_leaving(fingerprint)
        out = True

    while True:
        if poller.closed:
            await _give_back(state)
            raise ClientClosedError()
        if not state.leases:
            state.leases = await poller.unless_closed(acquire_leases(limiters))
        state.attempts += 1
        try:
            try:
                response = await transport.send(
                    transport.http.build_request(route.method, url, json=body),
                    attempt=state.attempts,
                    on_sent=sending,
                )
                generation = parse_generation(response)
                # Claimed before the POST counts as answered: a twin whose reply was
                # lost waits for this one (see `_reconcile`) and must find it taken.
                poller.claim(generation.generation_request_id)
            finally:
                if out:
                    out = False
                    poller.post_answered(fingerprint)
        except SendAborted:
            await _give_back(state)
            raise
        except RateLimitError as exc:
            state.answered()
            state.rate_limited += 1
            pending_cap = "retry-after" not in exc.response.headers
            await _give_back(state, pending_cap=pending_cap)
            ours_pending = any(limiter.statistics().bound for limiter in limiters)
            if pending_cap and ours_pending:
                # One of ours ending makes room: flow control, not a failed try.
                await _wait_for_room(limiters[-1], policy.rate_limit_wait, deadline, exc)
                continue
            refusals += 1
            if refusals > policy.max_retries:
                raise
            delay = retry_after_seconds(exc.response, policy.max_retry_after)
            if delay is None:
                wait = policy.rate_limit_wait * (1 + 0.25 * random.random())
                await _sleep_within(deadline, wait, exc)
            else:
                await _sleep_within(deadline, delay, exc, retry_after=True)
            continue
        except MalformedResponseError as exc:
            # A 2xx the service sent: it accepted the POST, we just cannot read the id.
            return await _reconcile(client, fingerprint, body, state, exc, claim)
        except APIStatusError as exc:
            fate = post_fate(exc.status_code)
            if fate is Fate.MAYBE_CREATED and not policy.retry_unsafe_posts:
                return await _reconcile(client, fingerprint, body, state, exc, claim)
            state.answered()
            await _give_back(state)
            refusals += 1
            if fate is Fate.REFUSED or refusals > policy.max_retries:
                raise
            await _sleep_within(deadline, transport.backoff(refusals), exc)
            continue
        except APIConnectionError as exc:
            if exc.may_have_been_sent and not policy.retry_unsafe_posts:
                return await _reconcile(client, fingerprint, body, state, exc, claim)
            state.answered()
            await _give_back(state)
            refusals += 1
            # A token that could not be had was retried already: don't multiply tries.
            if isinstance(exc, TokenUnavailableError) or refusals > policy.max_retries:
                raise
            await _sleep_within(deadline, transport.backoff(refusals), exc)
            continue
        except BaseException:
            with anyio.CancelScope(shield=True):
                if state.sent:
                    _find_later(client, route, body, state)
                else:
                    await _give_back(state)
            raise
        for limiter, lease in state.leases:
            await limiter.bind(lease, generation.generation_request_id)
        return generation


def _fingerprint(route: Route, body: Mapping[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{route.name}:{text}".encode()).hexdigest()


def _find_later(
    client: AsyncGettyAI, route: Route, body: dict[str, Any], state: SubmitState
) -> None:
    """A POST that left and was cut off: look for its generation once the caller is gone."""
    leases, state.leases = list(state.leases), []
    sent_at = state.sent_at if state.sent_at is not None else time.time()
    poller = client._poller

    async def find() -> None:
        found = await find_in_history(
            client.history,
            body,
            sent_at=sent_at,
            claim=poller.claim,
            grace=client.history_grace,
        )
        if found is None:
            await release_leases(leases, pending_cap=False)
            return
        log.info("a cancelled POST created generation %s: following it", found)
        for limiter, lease in leases:
            await limiter.bind(lease, found)
        poller.track(found, leases, kind=route.name)

    poller.spawn(find, name="getty-ai find a cancelled POST")


async def _give_back(state: SubmitState, *, pending_cap: bool = False) -> None:
    await release_leases(state.leases, pending_cap=pending_cap)


async def _sleep_within(
    deadline: Deadline, seconds: float, error: GettyAIError, *, retry_after: bool = False
) -> None:
    """Sleep (cut to the deadline), or give up with `error` when no time is left or a
    Retry-After alone would cross the deadline."""
    if not await deadline.sleep(seconds, required=retry_after):
        why = (
            f"the service's Retry-After of {seconds:g}s would pass max_retry_time"
            if retry_after
            else "max_retry_time passed"
        )
        annotate(error, f"not retried: {why}")
        raise error


async def _wait_for_room(
    limiter: Limiter, longest: float, deadline: Deadline, error: GettyAIError
) -> None:
    if deadline.expired:
        annotate(error, "not retried: max_retry_time passed while the pending cap stayed full")
        raise error
    await limiter.wait_for_room(min(longest, deadline.remaining()))


async def _reconcile(
    client: AsyncGettyAI,
    fingerprint: str,
    body: dict[str, Any],
    state: SubmitState,
    cause: GettyAIError,
    claim: Claim | None,
) -> Generation:
    """The POST may have created a generation: find it in the history, or say so."""
    sent_at = state.sent_at if state.sent_at is not None else time.time()
    poller = client._poller
    owner = claim or poller.claim

    async def claim_after_twins(generation_request_id: str) -> bool:
        # A twin POST (same route and body) still out could own what the history
        # shows: let it be answered first, so that its reply claims its own id.
        await poller.posts_settled(fingerprint, timeout=_TWIN_WAIT)
        taken = owner(generation_request_id)
        return await taken if inspect.isawaitable(taken) else taken

    try:
        found = await find_in_history(
            client.history,
            body,
            sent_at=sent_at,
            claim=claim_after_twins,
            grace=client.history_grace,
        )
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _give_back(state)
        raise
    if found is None:
        await _give_back(state)
        raise SubmissionUncertainError(state.label, str(cause), history_checked=True) from cause
    state.adopted = True
    for limiter, lease in state.leases:
        await limiter.bind(lease, found)
    return Generation.from_response({"generation_request_id": found}, pending=True)
