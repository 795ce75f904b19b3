"""The public namespace: sorted `__all__`, everything importable, tidy module names."""

from __future__ import annotations

import types

import getty_ai_async
from getty_ai_async import errors


def test_all_is_sorted_and_unique() -> None:
    assert getty_ai_async.__all__ == sorted(set(getty_ai_async.__all__))
    assert errors.__all__ == sorted(set(errors.__all__))


def test_every_exported_name_is_importable() -> None:
    for name in getty_ai_async.__all__:
        exec(f"from getty_ai_async import {name}", {})  # noqa: S102
        assert getattr(getty_ai_async, name) is not None
    for name in errors.__all__:
        assert isinstance(getattr(errors, name), type)


def test_public_names_are_exported() -> None:
    """Like httpx's test_exported_members: nothing public is left out of __all__."""
    public = {
        name
        for name, value in vars(getty_ai_async).items()
        if not name.startswith("_")
        and not (isinstance(value, types.ModuleType) and name != "errors")
        and name != "annotations"  # from __future__ import annotations
    }
    assert public <= set(getty_ai_async.__all__)


def test_exported_classes_claim_the_package_as_module() -> None:
    for name in getty_ai_async.__all__:
        value = getattr(getty_ai_async, name)
        if isinstance(value, type):
            assert value.__module__ == "getty_ai_async", name


def test_design_names_are_exported() -> None:
    for name in (
        "AsyncGettyAI",
        "GenerationRequest",
        "Generation",
        "GeneratedImage",
        "Download",
        "GenerationOutcome",
        "RetryPolicy",
        "errors",
        "__version__",
    ):
        assert name in getty_ai_async.__all__
    assert isinstance(getty_ai_async.__version__, str)
    assert getty_ai_async.__version__


def test_the_package_needs_nothing_its_install_does_not_bring() -> None:
    """`pip install getty-ai-async` brings neither sniffio nor trio: nothing may need them."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "sys.modules['sniffio'] = sys.modules['trio'] = None  # as if not installed\n"
        "import anyio\n"
        "from getty_ai_async import AsyncGettyAI\n"
        "async def main():\n"
        "    async with AsyncGettyAI.sandbox(pending_seconds=0.05, poll_interval=0.01) as c:\n"
        "        await c.generate('a fox')\n"
        "        assert len([o async for o in c.generate_many(['a', 'b'])]) == 2\n"
        "anyio.run(main)\n"
        "print('ok')\n"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr
