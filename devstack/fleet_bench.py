"""Publishing to a fleet, measured (``scripts/bench`` phase 9; alone: ``scripts/bench --only fleet``):
with 1, 4 and 16 Varnish nodes side by side, two editors race on one article (each saves it about
once a second, half a second apart) while readers read it at 500 req/s spread over every node and
the emulated CDN (Fastly's API; in front of the first node).

For each node count: publish-to-visible (from a save's start until every node has served that
version or a newer one: p50, p99), the same through the CDN, and the CPU the publishing renderer
spends per publish. The
editors publish through a renderer of their own, so its CPU is the publishes' alone (readers'
misses go to the stack's renderer). It uses only ``start_stack``, the editors' API and the
readers of phase 6, so it measures an older release from its checkout too (the README's "before"
is 1801755, this file run there with the reader written out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

import aiohttp

from devstack import servers
from devstack.breaking import read_titles
from devstack.probes import cpu_seconds
from devstack.stack import Ports, Stack, emulated_cdn_settings, start_stack

TOKEN = "bench-" + "0" * 40
NODE_COUNTS = (1, 4, 16)


def _article(number: int) -> bytes:
    body = {"title": f"Urgente {number}", "section": "politica", "body_html": "<p>Texto.</p>", "authors": ["Redação"]}
    return json.dumps(body).encode()


def _pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def _race(stack: Stack, editors_url: str, editors_pids: list[int], seconds: float, rate: float) -> dict[str, Any]:
    slug = f"corrida-{random.randrange(10**9)}"
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    numbers = iter(range(1, 10**6))
    publishes: list[tuple[int, float, float, int]] = []  # number, start, end, status
    reads: list[tuple[int, float, float, int | None]] = []  # node, start, end, number seen
    stop = asyncio.Event()
    laps: dict[str, list[float]] = {}  # a publish's steps, from its Server-Timing (older releases: none)
    nodes = stack.public_urls
    targets = [*nodes, *([stack.cdn_url] if stack.cdn_url else [])]  # the CDN, in front of node 1, last
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256), timeout=aiohttp.ClientTimeout(total=10)
    ) as session:

        async def save(number: int) -> int:
            url = f"{editors_url}/api/articles/{slug}"
            async with session.put(url, data=_article(number), headers=headers) as resp:
                await resp.read()
                for part in resp.headers.get("Server-Timing", "").split(", "):
                    name, _, ms = part.partition(";dur=")
                    if ms:
                        laps.setdefault(name, []).append(float(ms))
                return resp.status

        await save(next(numbers))
        for node in nodes:  # every node holds the article before the race
            async with session.get(f"{node}/noticia/{slug}.ghtml") as resp:
                await resp.read()

        async def editor(offset: float) -> None:
            await asyncio.sleep(offset)
            began = time.monotonic()
            while time.monotonic() - began < seconds:
                start = time.monotonic()
                number = next(numbers)
                status = await save(number)
                publishes.append((number, start, time.monotonic(), status))
                await asyncio.sleep(max(0.0, start + 1.0 - time.monotonic()))

        async def reader(index: int, workers: int) -> None:
            node = index % len(targets)
            url = f"{targets[node]}/noticia/{slug}.ghtml"
            await read_titles(session, url, workers / rate, index / rate, stop, lambda r: reads.append((node, *r)))

        async def editors() -> None:
            await asyncio.gather(editor(0.0), editor(0.5))
            stop.set()

        cpu_before = sum(cpu_seconds(pid) for pid in editors_pids)
        workers = max(64, 4 * len(targets))
        await asyncio.gather(editors(), *(reader(i, workers) for i in range(workers)))
        cpu = sum(cpu_seconds(pid) for pid in editors_pids) - cpu_before

    visible: list[float] = []
    via_cdn: list[float] = []
    never = 0
    for number, start, _, status in publishes:
        if status not in (200, 201, 202):
            continue
        firsts = []
        for index in range(len(targets)):
            seen = [end for n, s, end, v in reads if n == index and s >= start and v is not None and v >= number]
            if seen:
                firsts.append(min(seen))
        if len(firsts) == len(targets):
            visible.append(max(firsts[: len(nodes)]) - start)
            if len(targets) > len(nodes):
                via_cdn.append(firsts[-1] - start)
        else:
            never += 1
    answered = [end - start for _, start, end, _ in publishes]
    statuses: dict[int, int] = {}
    for _, _, _, status in publishes:
        statuses[status] = statuses.get(status, 0) + 1
    return {
        "nodes": len(nodes),
        "publishes": len(publishes),
        "statuses": statuses,
        "reads": len(reads),
        "read_errors": sum(1 for *_, v in reads if v is None),
        "visible_p50_ms": 1000 * _pct(visible, 0.5),
        "visible_p99_ms": 1000 * _pct(visible, 0.99),
        "never_visible": never,
        "cdn_visible_p50_ms": 1000 * _pct(via_cdn, 0.5),
        "cdn_visible_p99_ms": 1000 * _pct(via_cdn, 0.99),
        "answer_p50_ms": 1000 * _pct(answered, 0.5),
        "answer_p99_ms": 1000 * _pct(answered, 0.99),
        "cpu_ms_per_publish": 1000 * cpu / max(1, len(publishes)),
        "steps_p50_ms": {name: _pct(values, 0.5) for name, values in laps.items()},
    }


def measure(run_dir: Path, nodes: int, seconds: float = 20.0, rate: float = 500.0) -> dict[str, Any]:
    """One node count on a stack of its own: the two editors' race, measured."""
    stack = start_stack(
        run_dir,
        Ports.free(),
        environ={"EDITOR_TOKENS": TOKEN},
        renderer_env={"PROCESSES": "2"},
        varnish_nodes=nodes,
        cdn="fastly",
    )
    try:
        cdn_env = emulated_cdn_settings("fastly", stack.cdn_api_url or "")
        editors_env = {**stack.env, **cdn_env, "EDITOR_TOKENS": TOKEN, "PROCESSES": "1"}
        editors = servers.renderer(run_dir, servers.free_port(), editors_env).start()
        try:
            pids = [editors.pid or 0, *servers.child_pids(editors.pid or 0)]
            return asyncio.run(_race(stack, f"http://127.0.0.1:{editors.port}", pids, seconds, rate))
        finally:
            editors.stop()
    finally:
        stack.stop()


def fleet_publishing(run_dir: Path, seconds: float = 20.0) -> dict[str, Any]:
    """Every node count in ``NODE_COUNTS``, one after another."""
    return {"fleet_publishing": [measure(run_dir / f"nodes-{n}", n, seconds) for n in NODE_COUNTS]}


def lines(results: dict[str, Any]) -> list[str]:
    """The bench table's lines for these measurements."""
    out = [
        "9. two editors racing on one article (a save each ~1 s), 500 req/s of readers over every node "
        "and the emulated CDN (Fastly, in front of node 1)",
        "   nodes  publish-to-visible on every node p50 / p99   through the CDN p50 / p99   "
        "publish answered p50 / p99   publishing renderer CPU per publish   statuses",
    ]
    for r in results["fleet_publishing"]:
        out.append(
            f"   {r['nodes']:>5}  {r['visible_p50_ms']:>8.0f} / {r['visible_p99_ms']:<6.0f} ms "
            f"(never: {r['never_visible']})"
            f"          {r.get('cdn_visible_p50_ms', float('nan')):>6.0f} / "
            f"{r.get('cdn_visible_p99_ms', float('nan')):<6.0f} ms      "
            f"          {r['answer_p50_ms']:>6.0f} / {r['answer_p99_ms']:<6.0f} ms        "
            f"{r['cpu_ms_per_publish']:>6.1f} ms                           {r['statuses']}"
        )
    for r in results["fleet_publishing"]:
        if steps := r.get("steps_p50_ms"):
            where = ", ".join(f"{name} {ms:.1f}" for name, ms in steps.items())
            out.append(f"   {r['nodes']:>5}  a publish's steps, p50 ms: {where}")
    return out


def main() -> None:
    """``python -m devstack.fleet_bench``: phase 9 alone, also from an older release's checkout
    (copy this file there) for the before of a before/after."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--run-dir", default="/tmp/pagecache-fleet-bench")
    args = parser.parse_args()
    print("\n".join(lines(fleet_publishing(Path(args.run_dir), args.seconds))))


if __name__ == "__main__":
    main()
