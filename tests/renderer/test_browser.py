"""An article page opened in real headless Chromium through Varnish."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import StackClients

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--window-size=1200,1400",
]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is not installed: scripts/provision installs it")
    profile = tmp_path / "chromium-profile"
    cmd = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_article_page_shows_its_headline_in_chromium(stack: StackClients, tmp_path: Path) -> None:
    url = f"{stack.site}/noticia/tiroteio-deixa-um-morto-e-feridos.ghtml"
    dom = chromium(tmp_path, "--enable-logging=stderr", "--v=0", "--dump-dom", url)
    assert "<h1>Tiroteio deixa um morto e três feridos na Zona Norte do Rio</h1>" in dom.stdout, dom.stderr[-2000:]
    # The page's own Content-Security-Policy blocks nothing the page uses (its inline style).
    assert "Content Security Policy" not in dom.stderr, dom.stderr[-2000:]
    screenshot = tmp_path / "article.png"
    shot = chromium(tmp_path, f"--screenshot={screenshot}", url)
    assert screenshot.exists() and screenshot.stat().st_size > 10_000, shot.stderr[-2000:]
