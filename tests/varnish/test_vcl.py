"""The VCL under varnishtest: each ``*.vtc`` here runs against ``varnish/default.vcl`` as shipped
(or, ``cdn_*.vtc``, the emulated CDN's ``devstack/cdn/cdn.vcl``).

varnishtest's ``-vcl+backend`` declares the test's backends first; ``backends.vcl`` and
``cdn_backend.vcl`` beside this file stand in for a deployment's (only the purgers ACL), and are
copied next to the VCL under test so that its ``include`` finds them.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from devstack.servers import REPO, require_binary

HERE = Path(__file__).resolve().parent
CASES = sorted(HERE.glob("*.vtc"))


@pytest.fixture
def vcl_dir() -> Iterator[Path]:
    """Both VCLs and the test deployment parts in a directory varnishd's jailed user can read."""
    directory = Path(tempfile.mkdtemp(prefix="pagecache-vtc-"))
    directory.chmod(0o755)
    shutil.copy(REPO / "varnish" / "default.vcl", directory / "default.vcl")
    shutil.copy(REPO / "devstack" / "cdn" / "cdn.vcl", directory / "cdn.vcl")
    for part in ("backends.vcl", "cdn_backend.vcl"):
        shutil.copy(HERE / part, directory / part)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[case.stem for case in CASES])
def test_vcl(case: Path, vcl_dir: Path) -> None:
    result = subprocess.run(
        [require_binary("varnishtest"), "-t", "60", "-D", f"vcldir={vcl_dir}", str(case)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # On failure varnishtest prints the whole log; the lines starting "----" say what failed.
    failed = [line for line in result.stdout.splitlines() if line.startswith("----")]
    assert result.returncode == 0, "\n".join(failed) + "\n" + result.stdout[-6000:] + result.stderr[-2000:]


def test_there_are_vcl_cases() -> None:
    assert len(CASES) >= 8
