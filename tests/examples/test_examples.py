"""Every example runs, against the sandbox, and does what its docstring says."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest

from getty_ai_async import AsyncGettyAI

EXAMPLES = Path(__file__).parents[2] / "examples"


def load(name: str) -> ModuleType:
    """Import examples/<name>.py (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _sandbox_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # Even with a key in the environment, examples stay on the sandbox unless told.
    monkeypatch.setenv("GETTY_API_KEY", "not-a-real-key")
    monkeypatch.delenv("GETTY_USE_REAL_API", raising=False)


@pytest.mark.parametrize("name", ["quickstart", "fanout", "task_group", "web_app"])
def test_examples_use_the_sandbox_unless_told(name: str) -> None:
    module = load(name)
    options = {"max_pending": 4} if name in ("fanout",) else {}
    client: AsyncGettyAI = module.make_client(**options)

    assert client.simulator is not None


async def test_quickstart(capsys: pytest.CaptureFixture[str]) -> None:
    generation = await load("quickstart").main("a lighthouse at dusk")

    assert len(generation.images) == 4
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"generation {generation.generation_request_id} (seed {generation.seed})"
    assert len(printed) == 5


def test_quickstart_as_a_script() -> None:
    done = subprocess.run(  # noqa: S603 - our own interpreter and example
        [sys.executable, str(EXAMPLES / "quickstart.py"), "an owl"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "", "PYTHONPATH": str(EXAMPLES.parent)},
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("generation ")


async def test_fanout_with_journal(tmp_path: Path) -> None:
    fanout = load("fanout")
    journal = tmp_path / "run.sqlite"

    first = await fanout.main(count=100, journal=journal, max_pending=32)
    assert (first.done, first.failed, first.replayed) == (100, 0, 0)
    assert first.submissions == 100
    assert first.peak_pending <= 32

    again = await fanout.main(count=100, journal=journal, max_pending=32)
    assert (again.done, again.replayed) == (100, 100)
    assert again.submissions == 0


def test_fanout_prompts_are_lazy_and_distinct() -> None:
    prompts = load("fanout").prompts(10**9)

    first = [next(prompts) for _ in range(300)]
    assert len(set(first)) == 300


def test_task_group(tmp_path: Path) -> None:
    task_group = load("task_group")

    made = anyio.run(task_group.main, tmp_path)

    assert sorted(item.name for item in made) == sorted(task_group.SCENES)
    for item in made:
        assert item.file == tmp_path.resolve() / f"{item.name}.png"
        assert item.file.read_bytes().startswith(b"\x89PNG")


async def test_web_app_submits_then_the_page_polls() -> None:
    web_app = load("web_app")
    sandbox_client = AsyncGettyAI.sandbox(
        pending_seconds=2.0, time_scale=0.02, cdn_base_url="", poll_interval=0.01
    )
    async with sandbox_client as client:
        app = web_app.GeneratorApp(client)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as browser:
            page = await browser.get("/")
            assert page.status_code == 200
            assert 'fetch("/status/"' in page.text

            submitted = await browser.post("/generate", json={"prompt": "a red fox"})
            assert submitted.status_code == 202
            job = submitted.json()
            assert job["status"] == "pending"

            polls = 0
            with anyio.fail_after(10):
                while job["status"] == "pending":
                    await anyio.sleep(0.01)
                    reply = await browser.get(f"/status/{job['id']}")
                    assert reply.status_code == 200
                    job = reply.json()
                    polls += 1
            assert polls > 1
            assert len(job["images"]) == 4
            assert job["blocked"] == 0
            # The lease of the wait=False generation came back when the client's poller
            # saw it finish (whoever polled first).
            with anyio.fail_after(5):
                while client.limiter.statistics().in_use:  # noqa: ASYNC110 - a count
                    await anyio.sleep(0.01)

            image = await browser.get(job["images"][0])
            assert image.status_code == 200
            assert image.content.startswith(b"\x89PNG")

            assert (await browser.post("/generate", json={"prompt": ""})).status_code == 400
            assert (await browser.post("/generate", content=b"not json")).status_code == 400
            assert (await browser.get("/status/no-such-id")).status_code == 404
            assert (await browser.get("/nothing-here")).status_code == 404


def test_web_app_without_uvicorn_says_which_extra_to_install() -> None:
    # Run as the README says, in an environment where uvicorn cannot be imported.
    blocker = (
        "import runpy, sys; sys.modules['uvicorn'] = None; "
        f"sys.argv = ['web_app.py']; runpy.run_path({str(EXAMPLES / 'web_app.py')!r}, "
        "run_name='__main__')"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter and example
        [sys.executable, "-c", blocker],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "", "PYTHONPATH": str(EXAMPLES.parent)},
    )

    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "web_app.py needs uvicorn, which comes with the 'cli' extra: "
        "pip install 'getty-ai-async[cli]'"
    ]


def test_the_web_app_shares_its_cap_through_redis_when_told() -> None:
    from getty_ai_async import RedisLimiter

    client: AsyncGettyAI = load("web_app").make_client(redis="redis://:pw@127.0.0.1:1/0")
    assert isinstance(client.limiter, RedisLimiter)
    assert client.simulator is not None


def test_workers_share_one_cap_through_redis(redis_server: Any) -> None:
    report = load("workers").main(redis_server.url, workers=3, prompts=60, cap=4)
    assert (report.prompts, report.done) == (60, 60)
    assert report.peak_pending <= 4, "the workers together stayed within the account's cap"
    assert report.refused == 0
