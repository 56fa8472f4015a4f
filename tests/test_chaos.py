"""scripts/chaos against a real stack: readers of already-read pages never see an outage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from devstack import chaos
from devstack.samples import load_samples
from tests.conftest import StackClients


def test_chaos_scenarios_hide_every_outage_from_readers_of_read_pages(
    make_stack: Callable[..., StackClients], tmp_path: Path
) -> None:
    s = make_stack(PROCESSES="2")  # the worker-crash scenario needs a worker to crash
    load_samples(s.stack.env["MONGODB_URL"], s.stack.env["MONGODB_DB"])
    state = s.stack.save_state()
    out, report = tmp_path / "timeline.png", tmp_path / "chaos.json"
    assert chaos.main(["--state", str(state), "--quick", "--rate", "25", "--out", str(out), "--json", str(report)]) == 0
    outcomes = json.loads(report.read_text())
    assert [o["scenario"] for o in outcomes] == [s.name for s in chaos.SCENARIOS]
    for outcome in outcomes:
        assert outcome["requests"] > 50
        assert outcome["read_pages_not_200"] == 0, outcome
    # Redis dead while MongoDB runs at ~15 % of its capacity: within the overload targets.
    overloaded = outcomes[-1]
    assert overloaded["errors_share"] <= 0.01, overloaded
    assert overloaded["max_latency_s"] <= 2.0 + 0.5, overloaded
    assert out.stat().st_size > 20_000
    # Every server is back after the scenarios, restarted ones under new pids that the stack adopts.
    s.stack.refresh_from_state()
    assert all(server.running for server in s.stack.started.values())
