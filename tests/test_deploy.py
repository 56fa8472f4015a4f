"""Production files checked by real validators: Compose spec, Kubernetes schemas, hadolint, varnishd."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (test extras)")
    return found


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)


def test_compose_file_follows_the_compose_specification() -> None:
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_manifests_validate_against_the_kubernetes_schemas() -> None:
    manifests = sorted(str(p) for p in (REPO / "deploy" / "kubernetes").glob("*.yaml"))
    assert len(manifests) >= 3
    result = run(tool("kubernetes-validate"), "--strict", *manifests)
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = {doc["kind"] for path in manifests for doc in yaml.safe_load_all(Path(path).read_text())}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap", "Secret"} <= kinds


def test_renderer_probes_point_at_the_healthchecks() -> None:
    docs = list(yaml.safe_load_all((REPO / "deploy" / "kubernetes" / "renderer.yaml").read_text()))
    container = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthcheck"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthcheck/live"
    assert {"requests", "limits"} <= set(container["resources"])


def test_dockerfile_passes_hadolint() -> None:
    result = run(tool("hadolint"), "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def backends_files() -> dict[str, str]:
    k8s = yaml.safe_load_all((REPO / "deploy" / "kubernetes" / "varnish.yaml").read_text())
    configmap = next(d for d in k8s if d["kind"] == "ConfigMap")
    return {
        "devstack": (REPO / "varnish" / "backends.vcl").read_text(),
        "compose": (REPO / "deploy" / "varnish" / "backends-compose.vcl").read_text(),
        "kubernetes": configmap["data"]["backends.vcl"],
    }


@pytest.mark.parametrize("where", ["devstack", "compose", "kubernetes"])
def test_default_vcl_compiles_with_each_deployments_backends(where: str, tmp_path: Path) -> None:
    backends = backends_files()[where]
    # Container host names do not resolve here; varnishd -C needs addresses that do.
    for host in ("renderer-1", "renderer-2", "pagecache-renderer"):
        backends = backends.replace(f'"{host}"', '"127.0.0.1"')
    (tmp_path / "backends.vcl").write_text(backends)
    shutil.copy(REPO / "varnish" / "default.vcl", tmp_path / "default.vcl")
    # A scratch -n dir: never compile with a live instance's (that breaks it).
    result = subprocess.run(
        [
            shutil.which("varnishd") or "/usr/sbin/varnishd",
            "-C",
            "-n",
            str(tmp_path / "scratch"),
            "-p",
            f"vcl_path={tmp_path}",
            "-f",
            str(tmp_path / "default.vcl"),
            *(["-j", "none"] if os.geteuid() == 0 else []),  # tmp_path is private (0700)
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_wheel_holds_the_service_and_no_dev_tooling(tmp_path: Path) -> None:
    # Built from a copy of what the Dockerfile's build stage sees, plus devstack to prove it is left out.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.rst"):
        shutil.copy(REPO / name, source / name)
    for package in ("renderer", "healthcheck", "devstack"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), "."],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=source,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("pagecache-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "renderer/templates/article.html" in names and "healthcheck/runner.py" in names
    assert not [name for name in names if name.startswith(("devstack/", "tests/"))]
