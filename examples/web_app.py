"""A small async web app: submit a prompt, let the browser poll for the result.

    python examples/web_app.py [--port 8080] [--redis URL]   # then open http://127.0.0.1:8080

Getty's advice for generation in web apps: do not hold a request open for the up to a
minute a generation takes. ``POST /generate`` submits with ``wait=False`` and answers
at once with the generation id; the page then polls ``GET /status/{id}``, which makes
one ``client.generations.get(id)`` call per poll, until the images are ready.

It is a plain ASGI app (no framework), served by uvicorn (in the ``cli`` extra). It
uses the sandbox unless GETTY_USE_REAL_API=1 and GETTY_API_KEY are set; with the
sandbox, it also serves the sandbox's image URLs under /cdn/ so the browser can show
them.

Running several copies of the app (processes, machines) on one account? Give each the
same ``--redis URL``: their pending generations then count against one shared cap (and
one request budget), as Getty counts them, instead of one cap per copy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

from getty_ai_async import AsyncGettyAI, Generation, RedisLimiter, errors

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 64 * 1024
MISSING_UVICORN = (
    "web_app.py needs uvicorn, which comes with the 'cli' extra: pip install 'getty-ai-async[cli]'"
)

PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>Getty AI generator demo</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; }
  input { width: 36rem; } img { width: 12rem; margin: .25rem; }
</style>
<h1>Generate images</h1>
<form id="form">
  <input id="prompt" placeholder="a red fox curled up in fresh snow" required>
  <button>Generate</button>
</form>
<p id="status"></p>
<div id="images"></div>
<script>
const form = document.getElementById("form");
const status = document.getElementById("status");
const images = document.getElementById("images");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  images.replaceChildren();
  status.textContent = "Submitting…";
  const reply = await fetch("/generate", {
    method: "POST",
    headers: {"content-type": "application/json"},
    body: JSON.stringify({prompt: document.getElementById("prompt").value}),
  });
  const job = await reply.json();
  if (!reply.ok) { status.textContent = job.error; return; }
  poll(job.id);
});

async function poll(id) {
  const reply = await fetch("/status/" + encodeURIComponent(id));
  const job = await reply.json();
  if (!reply.ok) { status.textContent = job.error; return; }
  if (job.status === "pending") {
    status.textContent = "Generating " + id + "…";
    setTimeout(() => poll(id), 1000);  // one cheap GET a second, no open connection
    return;
  }
  status.textContent = job.images.length + " images (" + job.blocked + " blocked)";
  for (const url of job.images) {
    const img = document.createElement("img");
    img.src = url;
    images.append(img);
  }
}
</script>
</html>
"""


def make_client(redis: str | None = None) -> AsyncGettyAI:
    """The app's one client; with `redis`, its cap is shared with every copy of the app."""
    options: dict[str, Any] = {}
    if redis is not None:
        options["limiter"] = RedisLimiter(redis, max_pending=8)
    if os.environ.get("GETTY_USE_REAL_API") == "1" and os.environ.get("GETTY_API_KEY"):
        return AsyncGettyAI(**options)
    # An empty CDN base makes the sandbox hand out relative image URLs (/cdn/...), which
    # this app forwards to the sandbox: the browser cannot reach an in-process host.
    return AsyncGettyAI.sandbox(
        pending_seconds=(3.0, 6.0), time_scale=0.5, cdn_base_url="", **options
    )


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def status_of(generation: Generation) -> dict[str, Any]:
    """What the page needs: pending, or the image URLs."""
    if generation.is_pending:
        return {"id": generation.generation_request_id, "status": "pending"}
    return {
        "id": generation.generation_request_id,
        "status": "done",
        "images": [image.url for image in generation.images],
        "blocked": len(generation.blocked),
    }


class GeneratorApp:
    """The ASGI app; every request shares `client`."""

    def __init__(self, client: AsyncGettyAI) -> None:
        self.client = client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if path.startswith("/cdn/") and self.client.simulator is not None:
            await self.client.simulator(scope, receive, send)
            return
        try:
            if method == "GET" and path == "/":
                await _reply(send, 200, PAGE.encode(), "text/html; charset=utf-8")
            elif method == "POST" and path == "/generate":
                await _json(send, 202, await self.generate(await _body(receive)))
            elif method == "GET" and path.startswith("/status/"):
                await _json(send, 200, await self.status(path.removeprefix("/status/")))
            else:
                raise HTTPError(404, "not found")
        except HTTPError as exc:
            await _json(send, exc.status, {"error": str(exc)})

    async def generate(self, body: bytes) -> dict[str, Any]:
        """Submit without waiting: the reply goes out at once, with the id to poll."""
        try:
            prompt = json.loads(body)["prompt"]
        except (ValueError, KeyError, TypeError):
            raise HTTPError(400, 'expected JSON like {"prompt": "..."}') from None
        try:
            generation = await self.client.generations.create(prompt, wait=False)
        except errors.ValidationError as exc:
            raise HTTPError(400, str(exc)) from None
        except errors.GettyAIError as exc:
            raise HTTPError(502, str(exc)) from None
        return status_of(generation)

    async def status(self, generation_id: str) -> dict[str, Any]:
        """One GET of the generation per poll of the page."""
        try:
            return status_of(await self.client.generations.get(generation_id))
        except (errors.ValidationError, errors.NotFoundError):
            raise HTTPError(404, f"no generation {generation_id!r}") from None
        except errors.GettyAIError as exc:
            raise HTTPError(502, str(exc)) from None


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise HTTPError(413, "request body too large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _reply(send: Send, status: int, body: bytes, content_type: str) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, data: dict[str, Any]) -> None:
    await _reply(send, status, json.dumps(data).encode(), "application/json")


async def main(host: str = "127.0.0.1", port: int = 8080, redis: str | None = None) -> None:
    """Serve the app with uvicorn until Ctrl-C."""
    import uvicorn

    async with make_client(redis) as client:
        config = uvicorn.Config(GeneratorApp(client), host=host, port=port, log_level="info")
        print(f"open http://{host}:{port}")
        await uvicorn.Server(config).serve()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Getty AI generator web demo")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--redis", metavar="URL", help="share the account's cap with other copies of the app"
    )
    arguments = parser.parse_args()
    try:
        import uvicorn  # noqa: F401 - checked before starting, to fail with one line
    except ModuleNotFoundError:
        sys.exit(MISSING_UVICORN)
    anyio.run(main, arguments.host, arguments.port, arguments.redis)
