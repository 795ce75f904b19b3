"""Retries via stamina: Retry-After, backoff, what is (not) replayed, and turning it off."""

from __future__ import annotations

import datetime as dt
import email.utils
import math
from pathlib import Path

import anyio
import httpx
import pytest
import respx

from getty_ai_async import RetryPolicy, _transport, errors
from getty_ai_async._transport import Deadline, retry_after_seconds, wait_within

from ._helpers import FAST, GEN_ID, HISTORY_PATH, ClientFactory, finished, history_of, url

GET_PATH = f"/v3/ai/image-generations/{GEN_ID}"
POST_PATH = "/v3/ai/image-generations"


def ok() -> respx.MockResponse:
    return respx.MockResponse(200, json=finished())


# ------------------------------------------------------------------ Retry-After


async def test_429_retry_after_seconds_is_honoured(
    router: respx.MockRouter, make_client: ClientFactory, retry_waits: list[float]
) -> None:
    route = router.get(url(GET_PATH)).mock(
        side_effect=[respx.MockResponse(429, headers={"Retry-After": "0.02"}), ok()]
    )
    client = make_client()
    started = anyio.current_time()
    await client.generations.get(GEN_ID)
    assert anyio.current_time() - started >= 0.02
    assert route.call_count == 2
    assert retry_waits == [pytest.approx(0.02)]


async def test_429_without_retry_after_waits_about_rate_limit_wait(
    router: respx.MockRouter, make_client: ClientFactory, retry_waits: list[float]
) -> None:
    route = router.get(url(GET_PATH)).mock(side_effect=[respx.MockResponse(429), ok()])
    client = make_client(retry_policy=RetryPolicy(rate_limit_wait=0.01, wait_initial=5.0))
    await client.generations.get(GEN_ID)
    assert route.call_count == 2
    assert len(retry_waits) == 1
    assert 0.01 <= retry_waits[0] <= 0.0125  # 1 s in production, plus up to 25% jitter


async def test_retry_after_is_capped(
    router: respx.MockRouter, make_client: ClientFactory, retry_waits: list[float]
) -> None:
    router.get(url(GET_PATH)).mock(
        side_effect=[respx.MockResponse(429, headers={"Retry-After": "3600"}), ok()]
    )
    client = make_client(retry_policy=RetryPolicy(max_retry_after=0.01))
    await client.generations.get(GEN_ID)
    assert retry_waits == [0.01]


async def test_503_retry_after_is_honoured(
    router: respx.MockRouter, make_client: ClientFactory, retry_waits: list[float]
) -> None:
    router.get(url(GET_PATH)).mock(
        side_effect=[respx.MockResponse(503, headers={"Retry-After": "0.015"}), ok()]
    )
    await make_client().generations.get(GEN_ID)
    assert retry_waits == [pytest.approx(0.015)]


async def test_429_on_generation_post_honours_retry_after(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    route = router.post(url(POST_PATH)).mock(
        side_effect=[respx.MockResponse(429, headers={"Retry-After": "0.05"}), ok()]
    )
    client = make_client()
    started = anyio.current_time()
    generation = await client.generations.create("fox")
    assert anyio.current_time() - started >= 0.05
    assert route.call_count == 2
    assert generation.generation_request_id == GEN_ID
    assert client.limiter.in_use == 0


async def test_429_on_generation_post_gives_up_after_max_retries(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    route = router.post(url(POST_PATH)).respond(429, headers={"Retry-After": "0"})
    client = make_client()
    with pytest.raises(errors.RateLimitError):
        await client.generations.create("fox")
    assert route.call_count == FAST.max_retries + 1
    assert client.limiter.in_use == 0


def _response(retry_after: str | None) -> httpx.Response:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return httpx.Response(429, headers=headers)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        ("0.25", 0.25),
        ("9999", 60.0),
        (None, None),
        ("", None),
        ("soon", None),
    ],
)
def test_retry_after_seconds_delta(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(_response(value), cap=60.0) == expected


def assert_floored(seconds: float | None) -> None:
    floor = _transport.RETRY_AFTER_FLOOR
    assert seconds is not None
    assert floor <= seconds < 2 * floor


@pytest.mark.parametrize("value", ["0", "-3", "0.0001", "-inf", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_retry_after_now_or_in_the_past_waits_the_floor_with_jitter(value: str) -> None:
    """Issue 9.3: these were a 0 s wait, an immediate retry burst."""
    waits = {retry_after_seconds(_response(value), cap=60.0) for _ in range(20)}
    for seconds in waits:
        assert_floored(seconds)
    assert len(waits) > 1  # jittered: a crowd told "now" does not retry as one


def test_retry_after_floor_never_exceeds_the_cap() -> None:
    assert retry_after_seconds(_response("0"), cap=0.001) == 0.001


def test_shipped_retry_after_floor() -> None:
    # The unit tests shrink it (conftest); this is what callers get.
    assert _transport.DEFAULT_RETRY_AFTER_FLOOR == 0.1


async def test_429_with_retry_after_zero_is_not_an_immediate_retry(
    router: respx.MockRouter, make_client: ClientFactory, retry_waits: list[float]
) -> None:
    route = router.get(url(GET_PATH)).mock(
        side_effect=[respx.MockResponse(429, headers={"Retry-After": "0"}), ok()]
    )
    await make_client().generations.get(GEN_ID)
    assert route.call_count == 2
    assert len(retry_waits) == 1
    assert_floored(retry_waits[0])


def test_retry_after_seconds_http_date() -> None:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    value = email.utils.format_datetime(when, usegmt=True)
    assert value.endswith("GMT")
    seconds = retry_after_seconds(_response(value), cap=60.0)
    assert seconds is not None
    assert 28.0 <= seconds <= 30.0


def test_retry_after_seconds_http_date_capped() -> None:
    far = email.utils.format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(hours=2), usegmt=True)
    assert retry_after_seconds(_response(far), cap=60.0) == 60.0


def test_retry_after_seconds_http_date_with_minus_zero_zone() -> None:
    # RFC 5322 "-0000" makes parsedate_to_datetime return a naive datetime.
    assert_floored(retry_after_seconds(_response("Wed, 21 Oct 2015 07:28:00 -0000"), cap=60.0))


def test_retry_after_seconds_nan_is_ignored() -> None:
    assert retry_after_seconds(_response("nan"), cap=60.0) is None


# ------------------------------------------------------------------- 5xx / backoff


async def test_5xx_retried_with_exponential_backoff_then_succeeds(
    router: respx.MockRouter, make_client: ClientFactory, retry_waits: list[float]
) -> None:
    route = router.get(url(GET_PATH)).mock(
        side_effect=[respx.MockResponse(500), respx.MockResponse(502), ok()]
    )
    generation = await make_client().generations.get(GEN_ID)
    assert not generation.is_pending
    assert route.call_count == 3
    assert retry_waits == [pytest.approx(0.001), pytest.approx(0.002)]


async def test_5xx_retries_exhausted(
    router: respx.MockRouter, make_client: ClientFactory, retry_waits: list[float]
) -> None:
    route = router.get(url(GET_PATH)).respond(503)
    with pytest.raises(errors.InternalServerError):
        await make_client().generations.get(GEN_ID)
    assert route.call_count == FAST.max_retries + 1
    assert len(retry_waits) == FAST.max_retries
    assert max(retry_waits) <= FAST.wait_max


async def test_max_retries_zero_disables_retrying(
    router: respx.MockRouter, make_client: ClientFactory, retry_waits: list[float]
) -> None:
    get = router.get(url(GET_PATH)).respond(503)
    post = router.post(url(POST_PATH)).mock(side_effect=httpx.ConnectError("refused"))
    client = make_client(retry_policy=None, max_retries=0)
    with pytest.raises(errors.InternalServerError):
        await client.generations.get(GEN_ID)
    with pytest.raises(errors.APIConnectionError):
        await client.generations.create("fox")
    assert get.call_count == 1
    assert post.call_count == 1
    assert retry_waits == []


@pytest.mark.parametrize("status", [400, 403, 404, 409, 410])
async def test_client_errors_are_not_retried(
    router: respx.MockRouter, make_client: ClientFactory, status: int
) -> None:
    route = router.get(url(GET_PATH)).respond(status)
    with pytest.raises(errors.APIStatusError):
        await make_client().generations.get(GEN_ID)
    assert route.call_count == 1


async def test_408_is_retried(router: respx.MockRouter, make_client: ClientFactory) -> None:
    route = router.get(url(GET_PATH)).mock(side_effect=[respx.MockResponse(408), ok()])
    await make_client().generations.get(GEN_ID)
    assert route.call_count == 2


# ---------------------------------------------------------- connection problems


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow connect")],
    ids=["connect-error", "connect-timeout"],
)
async def test_unsent_post_is_retried(
    router: respx.MockRouter, make_client: ClientFactory, error: Exception
) -> None:
    route = router.post(url(POST_PATH)).mock(side_effect=[error, ok()])
    generation = await make_client().generations.create("fox")
    assert route.call_count == 2
    assert generation.generation_request_id == GEN_ID


@pytest.mark.parametrize(
    ("error", "error_class"),
    [
        (httpx.ReadTimeout("read timed out"), errors.APITimeoutError),
        (httpx.WriteTimeout("write timed out"), errors.APITimeoutError),
        (httpx.RemoteProtocolError("server disconnected"), errors.APIConnectionError),
        (httpx.ReadError("connection reset"), errors.APIConnectionError),
    ],
    ids=["read-timeout", "write-timeout", "remote-protocol", "read-error"],
)
async def test_maybe_sent_generation_post_is_not_replayed(
    router: respx.MockRouter,
    make_client: ClientFactory,
    error: Exception,
    error_class: type[errors.APIConnectionError],
) -> None:
    route = router.post(url(POST_PATH)).mock(side_effect=[error, ok()])
    history = router.get(url(HISTORY_PATH)).respond(200, json=history_of())
    client = make_client()

    with pytest.raises(errors.SubmissionUncertainError) as caught:
        await client.generations.create("an expensive fox")

    assert caught.value.history_checked
    cause = caught.value.__cause__
    assert isinstance(cause, errors.APIConnectionError)
    assert type(cause) is error_class
    assert cause.may_have_been_sent is True
    assert cause.method == "POST"
    assert cause.url == url(POST_PATH)
    assert route.call_count == 1
    assert history.called
    assert client.limiter.in_use == 0


async def test_lost_reply_is_adopted_from_history_without_a_second_post(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    route = router.post(url(POST_PATH)).mock(side_effect=httpx.ReadTimeout("lost"))
    other = {"generation_request_id": "someone-else", "prompt": "a red fox"}
    ours = {"generation_request_id": GEN_ID, "prompt": "an expensive fox"}
    router.get(url(HISTORY_PATH)).respond(200, json=history_of(other, ours))
    router.get(url(GET_PATH)).respond(200, json=finished())
    client = make_client()

    generation = await client.generations.create("an expensive fox")

    assert generation.generation_request_id == GEN_ID
    assert route.call_count == 1
    assert client.limiter.in_use == 0


async def test_maybe_sent_post_is_replayed_when_opted_in(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    route = router.post(url(POST_PATH)).mock(side_effect=[httpx.ReadTimeout("slow"), ok()])
    client = make_client(retry_policy=RetryPolicy(retry_unsafe_posts=True, wait_initial=0.001))
    await client.generations.create("fox")
    assert route.call_count == 2


async def test_unsent_errors_report_not_sent(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    router.get(url(GET_PATH)).mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(errors.APIConnectionError) as caught:
        await make_client().generations.get(GEN_ID)
    assert caught.value.may_have_been_sent is False
    assert not isinstance(caught.value, errors.APITimeoutError)


@pytest.mark.parametrize(
    "error", [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("dropped")], ids=str
)
async def test_get_is_retried_on_read_problems(
    router: respx.MockRouter, make_client: ClientFactory, error: Exception
) -> None:
    route = router.get(url(GET_PATH)).mock(side_effect=[error, ok()])
    await make_client().generations.get(GEN_ID)
    assert route.call_count == 2


async def test_download_put_is_not_replayed_on_read_timeout(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    """Each PUT buys the image: a lost reply is checked with a GET (test_downloads.py)."""
    dl_path = f"/v3/ai/image-generations/{GEN_ID}/images/0/download"
    put = router.put(url(dl_path)).mock(
        side_effect=[httpx.ReadTimeout("slow"), respx.MockResponse(200, json={"url": "u"})]
    )
    get = router.get(url(dl_path)).respond(200, json={"url": "u"})
    await make_client().downloads.create(GEN_ID, 0)
    assert put.call_count == 1
    assert get.call_count == 1


async def test_504_on_post_is_not_retried(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    route = router.post(url(POST_PATH)).mock(side_effect=[respx.MockResponse(504), ok()])
    router.get(url(HISTORY_PATH)).respond(200, json=history_of())
    with pytest.raises(errors.SubmissionUncertainError) as caught:
        await make_client().generations.create("fox")
    assert isinstance(caught.value.__cause__, errors.InternalServerError)
    assert caught.value.__cause__.status_code == 504
    assert route.call_count == 1


async def test_504_on_post_is_retried_when_opted_in(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    route = router.post(url(POST_PATH)).mock(side_effect=[respx.MockResponse(504), ok()])
    client = make_client(retry_policy=RetryPolicy(retry_unsafe_posts=True, wait_initial=0.001))
    await client.generations.create("fox")
    assert route.call_count == 2


async def test_504_on_get_is_retried(router: respx.MockRouter, make_client: ClientFactory) -> None:
    route = router.get(url(GET_PATH)).mock(side_effect=[respx.MockResponse(504), ok()])
    await make_client().generations.get(GEN_ID)
    assert route.call_count == 2


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_a_status_that_may_hide_a_created_generation_is_never_replayed(
    router: respx.MockRouter, make_client: ClientFactory, status: int
) -> None:
    route = router.post(url(POST_PATH)).mock(side_effect=[respx.MockResponse(status), ok()])
    history = router.get(url(HISTORY_PATH)).respond(200, json=history_of())
    with pytest.raises(errors.SubmissionUncertainError):
        await make_client().generations.create("fox")
    assert route.call_count == 1
    assert history.called


@pytest.mark.parametrize("status", [503, 408])
async def test_a_status_that_created_nothing_is_retried(
    router: respx.MockRouter, make_client: ClientFactory, status: int
) -> None:
    route = router.post(url(POST_PATH)).mock(side_effect=[respx.MockResponse(status), ok()])
    history = router.get(url(HISTORY_PATH)).respond(200, json=history_of())
    await make_client().generations.create("fox")
    assert route.call_count == 2
    assert not history.called


# ------------------------------------------------------ max_retry_time is a bound


async def test_retry_after_beyond_max_retry_time_gives_up_at_once(
    router: respx.MockRouter, make_client: ClientFactory, retry_waits: list[float]
) -> None:
    """Issue 9.2: with max_retry_time=0.5 and Retry-After: 3, two attempts took 4 s."""
    route = router.get(url(GET_PATH)).respond(429, headers={"Retry-After": "3"})
    client = make_client(retry_policy=RetryPolicy(max_retry_time=0.5))
    started = anyio.current_time()
    with pytest.raises(errors.RateLimitError) as caught:
        await client.generations.get(GEN_ID)
    assert anyio.current_time() - started < 2.0  # it did not sleep the 3 s
    assert route.call_count == 1
    assert retry_waits == []
    assert "Retry-After" in str(caught.value)
    assert "max_retry_time" in str(caught.value)


async def test_503_retry_after_beyond_max_retry_time_gives_up_at_once(
    router: respx.MockRouter, make_client: ClientFactory
) -> None:
    route = router.get(url(GET_PATH)).respond(503, headers={"Retry-After": "30"})
    client = make_client(retry_policy=RetryPolicy(max_retry_time=1.0))
    with pytest.raises(errors.InternalServerError) as caught:
        await client.generations.get(GEN_ID)
    assert route.call_count == 1
    assert "max_retry_time" in str(caught.value)


async def test_last_backoff_is_cut_to_the_deadline(
    router: respx.MockRouter, make_client: ClientFactory, retry_waits: list[float]
) -> None:
    """Exponential waits (0.2, then 0.4) stop at max_retry_time (0.3) instead of crossing it."""
    route = router.get(url(GET_PATH)).respond(503)
    policy = RetryPolicy(
        max_retries=10, max_retry_time=0.3, wait_initial=0.2, wait_max=10.0, wait_jitter=0.0
    )
    client = make_client(retry_policy=policy)
    with pytest.raises(errors.InternalServerError):
        await client.generations.get(GEN_ID)
    assert sum(retry_waits) <= 0.3, "no wait crosses the deadline"
    assert retry_waits[0] == pytest.approx(0.2)
    # The second wait is what was left of the 0.3 s (on a machine so loaded that the
    # first sleep overran the deadline, there is no second wait at all).
    assert all(0 < wait < 0.2 for wait in retry_waits[1:])
    assert route.call_count == len(retry_waits) + 1


async def test_cdn_fetch_retries_stop_at_the_deadline(
    router: respx.MockRouter, make_client: ClientFactory, retry_waits: list[float], tmp_path: Path
) -> None:
    dl_path = f"/v3/ai/image-generations/{GEN_ID}/images/0/download"
    router.put(url(dl_path)).respond(200, json={"url": "https://cdn.example.net/x.png"})
    router.get("https://cdn.example.net/x.png").respond(503)
    policy = RetryPolicy(
        max_retries=10, max_retry_time=0.06, wait_initial=0.04, wait_max=10.0, wait_jitter=0.0
    )
    with pytest.raises(errors.InternalServerError):
        await make_client(retry_policy=policy).downloads.save(GEN_ID, 0, tmp_path)
    assert sum(retry_waits) <= 0.06
    # 0.04 s, then what is left of 0.06 s (on a loaded machine nothing may be left).
    assert 1 <= len(retry_waits) <= 2


def test_wait_within_keeps_cuts_or_refuses() -> None:
    now = 100.0
    deadline = 101.0
    assert wait_within(deadline, 0.25, now=now) == 0.25
    assert wait_within(deadline, 5.0, now=now) == 1.0  # cut to what is left
    assert wait_within(deadline, 5.0, required=True, now=now) is None  # pointless to try sooner
    assert wait_within(deadline, 1.0, required=True, now=now) == 1.0
    assert wait_within(deadline, 0.1, now=deadline) is None  # nothing left
    assert wait_within(deadline, -1.0, now=now) == 0.0
    assert wait_within(math.inf, 1e9, required=True, now=now) == 1e9


async def test_deadline_sleep_never_crosses_it() -> None:
    deadline = Deadline.after(0.03)
    assert deadline.remaining() <= 0.03
    assert await deadline.sleep(10.0, required=True) is False  # gives up without sleeping
    assert deadline.remaining() > 0
    assert await deadline.sleep(10.0) is True  # cut: sleeps what is left
    assert deadline.expired
    assert await deadline.sleep(0.0) is False
    assert Deadline.after(math.inf).remaining() == math.inf
