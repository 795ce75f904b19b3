"""Every status the service can answer maps to the right `errors` class, with its details."""

from __future__ import annotations

import httpx
import pytest
import respx

from getty_ai_async import errors

from ._helpers import GEN_ID, HISTORY_PATH, NO_RETRY, ClientFactory, history_of, url

GET_PATH = f"/v3/ai/image-generations/{GEN_ID}"

STATUS_TO_ERROR = [
    (400, errors.BadRequestError),
    (401, errors.AuthenticationError),
    (403, errors.PermissionDeniedError),
    (404, errors.NotFoundError),
    (409, errors.ConflictError),
    (410, errors.GoneError),
    (429, errors.RateLimitError),
    (500, errors.InternalServerError),
    (502, errors.InternalServerError),
    (503, errors.InternalServerError),
    (504, errors.InternalServerError),
]


@pytest.mark.parametrize(("status", "error_class"), STATUS_TO_ERROR)
async def test_status_maps_to_error(
    router: respx.MockRouter,
    make_client: ClientFactory,
    status: int,
    error_class: type[errors.APIStatusError],
) -> None:
    client = make_client(retry_policy=NO_RETRY)
    route = router.get(url(GET_PATH)).respond(
        status, json={"message": "it went wrong"}, headers={"x-request-id": "req-123"}
    )

    with pytest.raises(errors.APIStatusError) as caught:
        await client.generations.get(GEN_ID)

    error = caught.value
    assert type(error) is error_class
    assert isinstance(error, errors.GettyAIError)
    assert error.status_code == status
    assert error.body == {"message": "it went wrong"}
    assert error.request_id == "req-123"
    assert error.response.status_code == status
    assert str(status) in str(error)
    assert GET_PATH in str(error)
    assert "it went wrong" in str(error)
    # 401 is replayed once with a fresh token; everything else is sent exactly once.
    assert route.call_count == (2 if status == 401 else 1)


@pytest.mark.parametrize(("status", "error_class"), STATUS_TO_ERROR)
async def test_status_maps_to_error_on_a_generation_post(
    router: respx.MockRouter,
    make_client: ClientFactory,
    status: int,
    error_class: type[errors.APIStatusError],
) -> None:
    client = make_client(retry_policy=NO_RETRY)
    router.post(url("/v3/ai/image-generations")).respond(
        status, json={"message": "nope"}, headers={"X-Request-ID": "req-9"}
    )
    history = router.get(url(HISTORY_PATH)).respond(200, json=history_of())
    maybe_created = status in (500, 502, 504)
    raised: type[errors.GettyAIError] = (
        errors.SubmissionUncertainError if maybe_created else error_class
    )
    with pytest.raises(raised) as caught:
        await client.generations.create("a prompt")
    # A status after which the service may have created the generation is looked up
    # in the history before it is reported; the status error is the cause.
    error = caught.value.__cause__ if maybe_created else caught.value
    assert type(error) is error_class
    assert isinstance(error, errors.APIStatusError)
    assert error.status_code == status
    assert error.request_id == "req-9"
    assert history.called is maybe_created
    assert client.limiter.in_use == 0


def _error_for(response: httpx.Response) -> errors.APIStatusError:
    response.request = httpx.Request("GET", "https://api.test/v3/x")
    return errors.make_status_error(response)


def test_non_json_body_is_kept_as_text() -> None:
    error = _error_for(httpx.Response(502, text="<html>Bad gateway</html>"))
    assert type(error) is errors.InternalServerError
    assert error.body == "<html>Bad gateway</html>"
    assert error.request_id is None
    assert "Bad gateway" in str(error)


def test_empty_body_is_none() -> None:
    error = _error_for(httpx.Response(404))
    assert type(error) is errors.NotFoundError
    assert error.body is None
    assert str(error) == "404 Not Found for GET /v3/x"


@pytest.mark.parametrize("header", ["x-correlation-id", "request-id"])
def test_other_request_id_headers(header: str) -> None:
    error = _error_for(httpx.Response(400, json={}, headers={header: "abc"}))
    assert error.request_id == "abc"


def test_unlisted_4xx_is_plain_status_error() -> None:
    error = _error_for(httpx.Response(418, json={"message": "teapot"}))
    assert type(error) is errors.APIStatusError
    assert error.status_code == 418


def test_hierarchy() -> None:
    assert issubclass(errors.ValidationError, ValueError)
    assert issubclass(errors.GenerationTimeoutError, TimeoutError)
    assert issubclass(errors.APITimeoutError, errors.APIConnectionError)
    for _, error_class in STATUS_TO_ERROR:
        assert issubclass(error_class, errors.APIStatusError)
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.GettyAIError)
