"""Looking at a running stack from outside: one /metrics value, one burst of concurrent requests,
a process's CPU time.

Shared by the tests, scripts/chaos and scripts/bench.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from renderer import contract


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU time process ``pid`` has used (with ``children``: its direct children's
    too, as varnishd's cache process beside its manager)."""
    pids = [pid]
    if children:
        found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        pids += [int(child) for child in found.split()]
    total = 0.0
    for each in pids:
        with open(f"/proc/{each}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def metric(base_url: str, name: str, timeout: float = 5, **labels: str) -> float:
    """The sum of the samples ``name`` (with ``labels``) on a renderer's /metrics."""
    with urllib.request.urlopen(base_url + "/metrics", timeout=timeout) as resp:
        text = resp.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def varnish_counters(varnish: Any) -> dict[str, int]:
    """A started Varnish server's counters (``varnishstat``), e.g. ``MAIN.backend_req``."""
    out = subprocess.run(
        ["varnishstat", "-1", "-j", "-n", str(varnish.workdir)], capture_output=True, text=True, check=True
    ).stdout
    data = json.loads(out)
    counters = data.get("counters", data)
    return {k: int(v["value"]) for k, v in counters.items() if isinstance(v, dict) and "value" in v}


async def concurrent_gets(urls: list[str]) -> Counter[tuple[int, str]]:
    """GET every URL at once (one connection each, released together); (status, X-Tier) counts."""
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        gate = asyncio.Event()

        async def one(url: str) -> tuple[int, str]:
            await gate.wait()
            async with session.get(url) as resp:
                await resp.read()
                return resp.status, resp.headers.get("X-Tier", "")

        tasks = [asyncio.ensure_future(one(url)) for url in urls]
        await asyncio.sleep(0.05)
        gate.set()
        return Counter(await asyncio.gather(*tasks))


def expire_records(client: Any, *cache_ids: str, rendered_ago: float | None = None) -> None:
    """Move these pages' records in Redis past their freshness and revalidation window, as time
    would: each stays only as the page's last good copy (served when MongoDB fails).
    ``rendered_ago``: also make them that many seconds old. Through the record's layout in
    ``contract.RECORD_KEYS``, not the renderer's code."""
    keys = contract.RECORD_KEYS
    for cache_id in cache_ids:
        value = client.get(contract.page_key(cache_id))
        if value is not None:
            head, _, html = value.partition(b"\n")
            meta = {**json.loads(head), keys["fresh_until"]: 1.0, keys["serve_until"]: 1.0}
            if rendered_ago is not None:
                meta[keys["rendered_at"]] = time.time() - rendered_ago
            client.set(contract.page_key(cache_id), json.dumps(meta).encode() + b"\n" + html, keepttl=True)


def logged_tiers(log_path: Path) -> dict[str, str]:
    """Request id -> the tier that answered it, from the renderer's access log (both processes).

    The public edge does not tell readers which tier answered (X-Tier stays inside); Varnish
    hands every request's X-Request-Id on to the renderer, whose log line names the tier.
    """
    tiers = {}
    for line in log_path.read_text().splitlines():
        if line.startswith("{") and '"message": "request"' in line:
            entry = json.loads(line)
            tiers[str(entry.get("request_id"))] = str(entry.get("tier"))
    return tiers


UNNAMED = "id:"


def unnamed_tier(request_id: str) -> str:
    """What answered a miss at the edge, until ``tier_names`` reads it from the renderer's log."""
    return UNNAMED + request_id


def tier_names(log_path: Path) -> Callable[[str], str]:
    """A function that names each ``unnamed_tier`` from the renderer's access log (``unknown``
    when the log has no line for it) and leaves every other tier as it is."""
    logged = logged_tiers(log_path)
    return lambda tier: logged.get(tier.removeprefix(UNNAMED), "unknown") if tier.startswith(UNNAMED) else tier
