"""The library is silent unless the application configures logging (issue 9.7)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import pytest
import respx
import stamina
import stamina.instrumentation

from ._helpers import GEN_ID, ClientFactory, finished, url

GET_PATH = f"/v3/ai/image-generations/{GEN_ID}"

# A script that makes the client retry twice (503, dropped connection) against a mock
# transport, in an interpreter where nobody configured logging.
SCRIPT = textwrap.dedent(
    """
    import anyio, httpx
    from getty_ai_async import AsyncGettyAI, RetryPolicy

    replies = iter([503, "drop", 200])

    def handler(request):
        if request.url.path == "/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 1800})
        reply = next(replies)
        if reply == "drop":
            raise httpx.RemoteProtocolError("dropped", request=request)
        return httpx.Response(reply, json={"generation_request_id": "g", "results": []})

    async def main():
        policy = RetryPolicy(wait_initial=0.001, wait_max=0.001, wait_jitter=0.0)
        async with AsyncGettyAI(
            api_key="k", api_secret="s", base_url="https://api.test",
            token_url="https://api.test/token", retry_policy=policy,
            transport=httpx.MockTransport(handler),
        ) as client:
            await client.generations.get("g")
        print("ok")

    anyio.run(main)
    """
)


def run_script(**env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GETTY_")} | env
    return subprocess.run(  # noqa: S603
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=False,
    )


def test_retries_print_nothing_when_the_app_configured_no_logging() -> None:
    """Every retry wrote `stamina.retry_scheduled` to stderr (logging's last resort)."""
    result = run_script()
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"
    assert result.stderr == ""


def test_getty_log_env_switch_logs_to_stderr() -> None:
    result = run_script(GETTY_LOG="debug")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    retries = [line for line in lines if "getty_ai_async.retry" in line]
    assert len(retries) == 2, result.stderr
    assert "INFO" in retries[0]
    assert "GET https://api.test/v3/ai/image-generations/g" in retries[0]
    assert any("getty_ai_async.http" in line and "DEBUG" in line for line in lines)
    assert "stamina.retry_scheduled" not in result.stderr


def test_getty_log_info_hides_debug_records() -> None:
    result = run_script(GETTY_LOG="info")
    assert "getty_ai_async.retry" in result.stderr
    assert "getty_ai_async.http" not in result.stderr


def test_package_logger_has_a_null_handler() -> None:
    handlers = logging.getLogger("getty_ai_async").handlers
    assert any(isinstance(handler, logging.NullHandler) for handler in handlers)


async def test_retries_are_logged_on_the_package_retry_logger(
    router: respx.MockRouter, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    router.get(url(GET_PATH)).mock(
        side_effect=[respx.MockResponse(503), respx.MockResponse(200, json=finished())]
    )
    with caplog.at_level(logging.DEBUG):
        await make_client().generations.get(GEN_ID)
    retries = [r for r in caplog.records if r.name == "getty_ai_async.retry"]
    assert [r.levelno for r in retries] == [logging.INFO]
    assert "503" in retries[0].getMessage()
    assert not [r for r in caplog.records if r.name == "stamina"]


async def test_other_libraries_stamina_retries_still_reach_stamina_logging(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Only our retries are taken off stamina's default logging hook."""
    saved = stamina.instrumentation.get_on_retry_hooks()
    stamina.instrumentation.set_on_retry_hooks(None)  # stamina's defaults
    try:
        make_client()  # installs the package's hook around the current ones
        calls = 0

        @stamina.retry(on=ValueError, attempts=2, wait_initial=0.001, wait_jitter=0)
        def flaky() -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise ValueError("once")

        with caplog.at_level(logging.DEBUG):
            flaky()
        assert [r.getMessage() for r in caplog.records if r.name == "stamina"] == [
            "stamina.retry_scheduled"
        ]
    finally:
        stamina.instrumentation.set_on_retry_hooks(saved)


async def test_other_hooks_still_see_our_retries(
    router: respx.MockRouter, make_client: ClientFactory, retry_waits: list[float]
) -> None:
    """A hook the application installed (metrics, say) keeps seeing every retry."""
    router.get(url(GET_PATH)).mock(
        side_effect=[respx.MockResponse(503), respx.MockResponse(200, json=finished())]
    )
    await make_client().generations.get(GEN_ID)
    assert len(retry_waits) == 1


def test_retry_hook_is_installed_once(make_client: ClientFactory) -> None:
    make_client()
    make_client()
    hooks = stamina.instrumentation.get_on_retry_hooks()
    ours = [hook for hook in hooks if type(hook).__module__ == "getty_ai_async._logging"]
    assert len(ours) == 1
