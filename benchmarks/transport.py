"""CPU per request of the HTTP transports, inside our client and raw (issue 10, point 2).

    python benchmarks/transport.py                 # about 1.5 min; exit 1 if a target is missed
    python benchmarks/transport.py --requests 256  # a smoke run
    python benchmarks/transport.py --profile ours  # cProfile of one candidate at 64
    python benchmarks/transport.py --profile ours --profiler pyinstrument

The sandbox runs in a process of its own (``getty-ai sandbox serve``, pending 0 so a
POST answers 200 with its images, no pending cap, no faults). In this process, every
candidate issues the same requests at concurrency 1, 8 and 64: N POSTs creating a
generation, then N GETs of them (the polls). What is measured is this process's CPU
time (``time.process_time``) per request; the server's CPU is not counted. Within a
round, the candidates take turns of a few times the concurrency until each has sent
its cell's requests, so that whatever else the machine runs weighs on them alike; each
cell is the best of ``--repeats`` rounds. Ratios are against the raw aiohttp loop of
the same run.

Candidates (those whose package is missing are skipped, with a note):

- ``raw aiohttp``, ``raw httpx``, ``raw httpx2``: a bare loop over the library's own
  client: the same URL, headers and JSON body, the reply's JSON decoded; ``raw httpx +
  aiohttp (ours)``: the same over httpx's client with our aiohttp transport (what the
  httpx layer costs on its own);
- ``ours + <transport>``: ``AsyncGettyAI(transport=...)`` with httpx's default
  transport (httpcore), httpx2's (httpcore2, through a small bridge defined here,
  since our client speaks httpx) and httpx-aiohttp's ``AiohttpTransport``;
- ``ours (default: ...)``: ``AsyncGettyAI()`` as a user gets it (aiohttp's transport,
  `getty_ai_async._aiohttp`, when installed): ``generations.create(prompt, wait=False)``
  and ``generations.get(id)``.

The full comparison needs ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import io
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from getty_ai_async import AsyncGettyAI, GenerationRequest
from getty_ai_async._constants import DEFAULT_LIMITS

# The client's pool sizes; idle connections dropped after 2 s, before uvicorn's 5 s
# keep-alive closes them under a request of the next round.
LIMITS = httpx.Limits(
    max_connections=DEFAULT_LIMITS.max_connections,
    max_keepalive_connections=DEFAULT_LIMITS.max_keepalive_connections,
    keepalive_expiry=2.0,
)

CONCURRENCY = (1, 8, 64)
PROMPT = "a red fox in snow"
BODY = GenerationRequest(prompt=PROMPT).to_body()  # what our client POSTs for PROMPT
GEN_PATH = "/v3/ai/image-generations"
API_KEY, API_SECRET = "bench-key", "bench-secret"
TARGET_RATIO = 2.5
WARMUP = 64


@dataclass(frozen=True)
class Server:
    base_url: str
    token_url: str


@contextlib.contextmanager
def sandbox_process() -> Iterator[Server]:
    """``getty-ai sandbox serve`` on a free loopback port, in a process of its own."""
    command = [
        sys.executable,
        "-m",
        "getty_ai_async._cli",
        "sandbox",
        "serve",
        "--port",
        "0",
        "--pending-seconds",
        "0",
        "--pending-limit",
        "0",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # "Getty AI sandbox listening on URL (Ctrl-C ...)"
        if "listening on " not in first:
            raise RuntimeError(f"the sandbox did not start: {first!r}")
        base_url = first.split("listening on ")[1].split()[0]
        yield Server(base_url, base_url + "/oauth2/token")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Candidate(Protocol):
    name: str

    async def start(self, server: Server) -> None: ...

    async def post(self) -> str: ...

    async def get(self, generation_request_id: str) -> None: ...

    async def close(self) -> None: ...


# ------------------------------------------------------------------ raw loops


async def _token(server: Server) -> dict[str, str]:
    """The headers a raw loop sends: what our client sends (Api-Key, bearer token)."""
    async with httpx.AsyncClient() as http:
        response = await http.post(
            server.token_url,
            data={
                "client_id": API_KEY,
                "client_secret": API_SECRET,
                "grant_type": "client_credentials",
            },
        )
        response.raise_for_status()
        token = response.json()["access_token"]
    return {"Api-Key": API_KEY, "Authorization": f"Bearer {token}"}


class RawAiohttp:
    name = "raw aiohttp"

    async def start(self, server: Server) -> None:
        import aiohttp

        self.headers = await _token(server)
        self.url = server.base_url + GEN_PATH
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=LIMITS.max_connections or 0, keepalive_timeout=LIMITS.keepalive_expiry
            )
        )

    async def post(self) -> str:
        async with self.session.post(self.url, json=BODY, headers=self.headers) as response:
            assert response.status == 200, response.status
            return str((await response.json())["generation_request_id"])

    async def get(self, generation_request_id: str) -> None:
        url = f"{self.url}/{generation_request_id}"
        async with self.session.get(url, headers=self.headers) as response:
            assert response.status == 200, response.status
            await response.json()

    async def close(self) -> None:
        await self.session.close()


class RawHttpx:
    """A bare loop over ``module.AsyncClient`` (httpx, or its fork httpx2)."""

    def __init__(
        self, module: str, transport: Callable[[], httpx.AsyncBaseTransport] | None = None
    ) -> None:
        self.name = f"raw {module}" + (" + aiohttp (ours)" if transport else "")
        self.module = module
        self.transport = transport

    async def start(self, server: Server) -> None:
        lib: Any = __import__(self.module)
        self.headers = await _token(server)
        self.url = server.base_url + GEN_PATH
        limits = lib.Limits(
            max_connections=LIMITS.max_connections,
            max_keepalive_connections=LIMITS.max_keepalive_connections,
            keepalive_expiry=LIMITS.keepalive_expiry,
        )
        transport = self.transport() if self.transport is not None else None
        self.http = lib.AsyncClient(limits=limits, headers=self.headers, transport=transport)

    async def post(self) -> str:
        response = await self.http.post(self.url, json=BODY)
        assert response.status_code == 200, response.status_code
        return str(response.json()["generation_request_id"])

    async def get(self, generation_request_id: str) -> None:
        response = await self.http.get(f"{self.url}/{generation_request_id}")
        assert response.status_code == 200, response.status_code
        response.json()

    async def close(self) -> None:
        await self.http.aclose()


# ------------------------------------------------------------------ our client


class Httpx2Bridge(httpx.AsyncBaseTransport):
    """httpx2's transport (httpcore2) behind httpx's transport API, for our client."""

    def __init__(self) -> None:
        import httpx2

        self._httpx2 = httpx2
        self._inner = httpx2.AsyncHTTPTransport(
            limits=httpx2.Limits(
                max_connections=LIMITS.max_connections,
                max_keepalive_connections=LIMITS.max_keepalive_connections,
                keepalive_expiry=LIMITS.keepalive_expiry,
            )
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        theirs = self._httpx2.Request(
            request.method,
            str(request.url),
            headers=request.headers.raw,
            content=request.content,
            extensions={"timeout": request.extensions.get("timeout", {})},
        )
        response = await self._inner.handle_async_request(theirs)
        return httpx.Response(
            response.status_code,
            headers=response.headers.raw,
            stream=_Httpx2Stream(response),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Httpx2Stream(httpx.AsyncByteStream):
    def __init__(self, response: Any) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.aiter_raw():
            yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()


def _httpx_aiohttp() -> httpx.AsyncBaseTransport:
    import httpx_aiohttp

    return httpx_aiohttp.AiohttpTransport(limits=LIMITS)


def _ours_aiohttp() -> httpx.AsyncBaseTransport:
    from getty_ai_async._aiohttp import AiohttpTransport

    return AiohttpTransport(limits=LIMITS)


class Ours:
    """Our client: ``generations.create(prompt, wait=False)`` and ``generations.get(id)``."""

    def __init__(self, name: str, transport: Callable[[], httpx.AsyncBaseTransport] | None) -> None:
        self.name = name
        self.transport = transport

    async def start(self, server: Server) -> None:
        self.client = AsyncGettyAI(
            api_key=API_KEY,
            api_secret=API_SECRET,
            base_url=server.base_url,
            token_url=server.token_url,
            max_pending=1_000_000,
            limits=LIMITS,
            transport=self.transport() if self.transport is not None else None,
        )
        await self.post()  # the default transport decides at the first request
        if self.transport is None:
            self.name = f"ours (default: {_backend_name(self.client)})"

    async def post(self) -> str:
        generation = await self.client.generations.create(PROMPT, wait=False)
        assert not generation.is_pending
        return generation.generation_request_id

    async def get(self, generation_request_id: str) -> None:
        await self.client.generations.get(generation_request_id)

    async def close(self) -> None:
        await self.client.aclose()


def _backend_name(client: AsyncGettyAI) -> str:
    transport = client._http._transport
    describe = getattr(transport, "backend", None)
    if callable(describe):
        return str(describe())
    return (
        "httpcore" if isinstance(transport, httpx.AsyncHTTPTransport) else type(transport).__name__
    )


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def candidates() -> tuple[list[Candidate], list[str]]:
    made: list[Candidate] = []
    skipped: list[str] = []

    def add(module: str, candidate: Callable[[], Candidate], name: str) -> None:
        if _have(module):
            made.append(candidate())
        else:
            skipped.append(f"{name} (no {module})")

    add("aiohttp", RawAiohttp, "raw aiohttp")
    made.append(RawHttpx("httpx"))
    add("httpx2", lambda: RawHttpx("httpx2"), "raw httpx2")
    made.append(Ours("ours + httpcore", lambda: httpx.AsyncHTTPTransport(limits=LIMITS)))
    add("httpx2", lambda: Ours("ours + httpx2 (bridge)", Httpx2Bridge), "ours + httpx2")
    add(
        "httpx_aiohttp",
        lambda: Ours("ours + httpx-aiohttp", _httpx_aiohttp),
        "ours + httpx-aiohttp",
    )
    add("aiohttp", lambda: RawHttpx("httpx", _ours_aiohttp), "raw httpx + aiohttp (ours)")
    made.append(Ours("ours (default)", None))
    return made, skipped


# ------------------------------------------------------------------ measuring


async def drive(total: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> None:
    """Run ``one(i)`` for i in range(total), `concurrency` at a time."""
    taken = 0

    async def worker() -> None:
        nonlocal taken
        while taken < total:
            index = taken
            taken += 1
            await one(index)

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())


@dataclass
class Cell:
    cpu: float
    """CPU seconds per request."""
    wall: float
    """Wall seconds for the whole phase."""


async def measure(candidate: Candidate, total: int, concurrency: int) -> tuple[Cell, Cell]:
    """CPU per request of `total` POSTs, then of `total` GETs of what they created."""
    ids: list[str] = [""] * total

    async def post(index: int) -> None:
        ids[index] = await candidate.post()

    async def get(index: int) -> None:
        await candidate.get(ids[index])

    cells = []
    for one in (post, get):
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        await drive(total, concurrency, one)
        cells.append(Cell((time.process_time() - cpu) / total, time.perf_counter() - wall))
    return cells[0], cells[1]


async def bench(
    args: argparse.Namespace, server: Server
) -> dict[str, dict[int, tuple[Cell, Cell]]]:
    made, skipped = candidates()
    if args.only:
        wanted = tuple(args.only.split(","))
        made = [c for c in made if c.name.startswith(wanted) or c.name == "raw aiohttp"]
    for note in skipped:
        print(f"skipped: {note}")
    best: dict[str, dict[int, tuple[Cell, Cell]]] = {}
    for candidate in made:
        await candidate.start(server)
        await measure(candidate, WARMUP, 64)  # connections open, token cached, code warm
    try:
        for round_number in range(args.repeats):
            for concurrency in CONCURRENCY:
                for candidate in made:
                    # Untimed: the pool refilled to this concurrency first.
                    await measure(candidate, concurrency, concurrency)
                cells = await interleaved(made, args.requests * concurrency // 64, concurrency)
                for name, (post, get) in cells.items():
                    kept = best.setdefault(name, {})
                    old = kept.get(concurrency)
                    if old is None:
                        kept[concurrency] = (post, get)
                    else:
                        kept[concurrency] = (
                            min(old[0], post, key=lambda cell: cell.cpu),
                            min(old[1], get, key=lambda cell: cell.cpu),
                        )
            print(f"round {round_number + 1}/{args.repeats} done", file=sys.stderr)
    finally:
        for candidate in made:
            await candidate.close()
    return best


async def interleaved(
    made: list[Candidate], requests: int, concurrency: int
) -> dict[str, tuple[Cell, Cell]]:
    """One cell for every candidate, sent in turns of a few times `concurrency` requests.

    Taking turns keeps whatever else the machine runs from weighing on one candidate
    more than another: they all share each stretch of time.
    """
    turn = 4 * max(concurrency, 16)
    total = max(requests, turn)
    sums = {candidate.name: [0.0, 0.0, 0.0, 0.0] for candidate in made}
    done = 0
    while done < total:
        size = min(turn, total - done)
        for candidate in made:
            post, get = await measure(candidate, size, concurrency)
            acc = sums[candidate.name]
            acc[0] += post.cpu * size
            acc[1] += post.wall
            acc[2] += get.cpu * size
            acc[3] += get.wall
        done += size
    return {
        name: (Cell(acc[0] / total, acc[1]), Cell(acc[2] / total, acc[3]))
        for name, acc in sums.items()
    }


def report(best: dict[str, dict[int, tuple[Cell, Cell]]], requests: int) -> bool:
    floor = best.get("raw aiohttp")
    header = "".join(f"{'c=' + str(c):>15}" for c in CONCURRENCY)
    ok = True
    for kind, which in (("POST (submit)", 0), ("GET (poll)", 1)):
        print(
            f"\n{kind}: client CPU µs per request (x raw aiohttp), {requests} requests "
            "a cell at c=64 (c/64 of it, at least 64, at lower c)"
        )
        print(f"{'candidate':<34}{header}")
        for name, cells in best.items():
            row = ""
            for concurrency in CONCURRENCY:
                cpu = cells[concurrency][which].cpu
                ratio = ""
                if floor is not None:
                    ratio = f"({cpu / floor[concurrency][which].cpu:.1f}x)"
                row += f"{cpu * 1e6:>8.0f} {ratio:>6}"
            print(f"{name:<34}{row}")
        if floor is not None:
            for name, cells in best.items():
                if name.startswith("ours (default"):
                    times = cells[64][which].cpu / floor[64][which].cpu
                    passed = times <= TARGET_RATIO
                    ok &= passed
                    print(
                        f"{'PASS' if passed else 'FAIL'}  {kind} at 64: {name} "
                        f"{times:.2f} x raw aiohttp (target <= {TARGET_RATIO})"
                    )
    print("\nwall seconds per cell (c=1 / 8 / 64), POST+GET:")
    for name, cells in best.items():
        walls = " / ".join(f"{cells[c][0].wall + cells[c][1].wall:.2f}" for c in CONCURRENCY)
        print(f"  {name:<34}{walls}")
    return ok


async def profile(args: argparse.Namespace, server: Server) -> None:
    """Profile one candidate's POSTs and GETs at concurrency 64."""
    made, _ = candidates()
    chosen = [c for c in made if c.name.startswith(args.profile)]
    if not chosen:
        raise SystemExit(f"no candidate named {args.profile!r}: {[c.name for c in made]}")
    candidate = chosen[0]
    await candidate.start(server)
    try:
        await measure(candidate, WARMUP, 64)
        if args.profiler == "pyinstrument":
            import pyinstrument

            profiler = pyinstrument.Profiler(async_mode="disabled", interval=0.0002)
            profiler.start()
            await measure(candidate, args.requests, 64)
            profiler.stop()
            print(profiler.output_text(unicode=True, color=False, show_all=False))
            return
        import cProfile
        import pstats

        cprofile = cProfile.Profile()
        cprofile.enable()
        await measure(candidate, args.requests, 64)
        cprofile.disable()
        for order in ("tottime", "cumulative"):
            out = io.StringIO()
            stats = pstats.Stats(cprofile, stream=out)
            stats.sort_stats(order).print_stats(args.top)
            print(f"== {candidate.name}: top {args.top} by {order}\n{out.getvalue()}")
    finally:
        await candidate.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=768, help="requests per cell at 64")
    parser.add_argument("--repeats", type=int, default=2, help="rounds (best of)")
    parser.add_argument("--only", help="candidates whose names start so (comma-separated)")
    parser.add_argument("--profile", help="profile the candidate whose name starts so")
    parser.add_argument("--profiler", choices=("cprofile", "pyinstrument"), default="cprofile")
    parser.add_argument("--top", type=int, default=30, help="profile entries shown")
    args = parser.parse_args()
    with sandbox_process() as server:
        print(f"sandbox: {server.base_url} (separate process, pending 0, no faults)")
        if args.profile:
            asyncio.run(profile(args, server))
            return 0
        started = time.perf_counter()
        best = asyncio.run(bench(args, server))
        ok = report(best, args.requests)
        print(f"\ntotal {time.perf_counter() - started:.0f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
