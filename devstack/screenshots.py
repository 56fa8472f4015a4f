"""Screenshots of each page kind as readers get them, on a desktop and a 390 px phone, so anyone
can look: ``python -m devstack.screenshots [SITE_URL] [OUT_DIR]`` against a running stack
(``scripts/run``; default ``http://127.0.0.1:6081``), written to ``OUT_DIR`` (default
``screenshots/``) as ``<page>-<width>.png``. Headless Chromium, a fresh profile each time."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PAGES = {
    "home": "/",
    "front": "/rio/",
    "article": "/noticia/tiroteio-deixa-um-morto-e-feridos.ghtml",
    "article-2": "/noticia/inflacao-desacelera-em-novembro.ghtml",
}
# Desktop, and the phone width most readers have (iPhone 12 to 15: 390 CSS pixels).
SIZES = {"desktop": (1280, 2000), "390": (390, 2400)}


def screenshot(chromium: str, url: str, path: Path, width: int, height: int) -> None:
    """``url`` rendered in a ``width`` × ``height`` window, written to ``path``."""
    with tempfile.TemporaryDirectory(prefix="pagecache-chromium-") as profile:
        subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={profile}", f"--window-size={width},{height}", f"--screenshot={path}", url],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip


def take(site_url: str, out: Path) -> list[Path]:
    """Every page kind at every size; the paths written."""
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("chromium is not installed: scripts/provision installs it")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for page, path in PAGES.items():
        for size, (width, height) in SIZES.items():
            target = out / f"{page}-{size}.png"
            screenshot(chromium, site_url.rstrip("/") + path, target, width, height)
            written.append(target)
    return written


if __name__ == "__main__":
    site = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:6081"
    for written in take(site, Path(sys.argv[2] if len(sys.argv) > 2 else "screenshots")):
        print(written)
