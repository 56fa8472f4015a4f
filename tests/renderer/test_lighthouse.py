"""Lighthouse on the home, a front and an article as readers get them (through Varnish, in headless
Chromium): accessibility and best practices at 100. Performance is a benchmark figure, not a test
(these machines are noisy). Lighthouse is pinned by tests/lighthouse/package-lock.json and
installed by scripts/provision into the virtualenv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StackClients

LIGHTHOUSE = Path(sys.prefix) / "lighthouse" / "node_modules" / ".bin" / "lighthouse"
PAGES = {
    "home": "/",
    "front": "/rio/",
    "article": "/noticia/tiroteio-deixa-um-morto-e-feridos.ghtml",
}
CATEGORIES = ("accessibility", "best-practices")


def lighthouse(url: str, work: Path) -> dict[str, Any]:
    """Lighthouse's report on ``url`` (its default: a mobile device), the two categories only."""
    chromium = shutil.which("chromium")
    if chromium is None or not LIGHTHOUSE.exists():
        pytest.fail(f"chromium or {LIGHTHOUSE} is missing: scripts/provision installs them")
    report = work / "report.json"
    flags = f"--headless=new --no-sandbox --disable-gpu --no-first-run --user-data-dir={work / 'profile'}"
    run = subprocess.run(
        [str(LIGHTHOUSE), url, f"--only-categories={','.join(CATEGORIES)}", "--output=json",
         f"--output-path={report}", "--quiet", f"--chrome-flags={flags}"],
        capture_output=True, text=True, timeout=180, env={**os.environ, "CHROME_PATH": chromium},
    )  # fmt: skip
    assert run.returncode == 0 and report.exists(), run.stderr[-3000:]
    return dict(json.loads(report.read_text()))


def failing_audits(report: dict[str, Any], category: str) -> list[str]:
    """The scored audits of ``category`` that did not pass, with what Lighthouse says about each."""
    failing = []
    for ref in report["categories"][category]["auditRefs"]:
        audit = report["audits"][ref["id"]]
        if ref["weight"] > 0 and audit["score"] is not None and audit["score"] < 1:
            failing.append(f"{ref['id']} ({audit['score']}): {audit['title']}")
    return failing


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(PAGES))
def test_every_page_kind_scores_100_on_accessibility_and_best_practices(
    stack: StackClients, tmp_path: Path, kind: str
) -> None:
    report = lighthouse(stack.site + PAGES[kind], tmp_path)
    assert report["finalDisplayedUrl"].endswith(PAGES[kind]) and not report.get("runtimeError"), report.get(
        "runtimeError"
    )
    scores = {category: report["categories"][category]["score"] for category in CATEGORIES}
    failing = {category: failing_audits(report, category) for category in CATEGORIES}
    assert scores == {category: 1 for category in CATEGORIES}, failing
