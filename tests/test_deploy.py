"""Production files checked by real validators: Compose spec, Kubernetes schemas, hadolint, varnishd."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from renderer.settings import Settings, _split
from renderer.tokens import usable_tokens

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
    manifests = sorted(
        str(p) for p in (REPO / "deploy" / "kubernetes").glob("*.yaml") if p.name != "kustomization.yaml"
    )
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
    # Every template and static file the renderer loads at run time (feeds, sitemaps, images too).
    data = {
        str(path.relative_to(REPO))
        for kind in ("templates", "static")
        for path in (REPO / "renderer" / kind).rglob("*.*")
    }
    assert data - set(names) == set()
    assert not [name for name in names if name.startswith(("devstack/", "tests/"))]


def k8s_documents() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted((REPO / "deploy" / "kubernetes").glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def pod_templates() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in k8s_documents() if d["kind"] in ("Deployment", "StatefulSet")}


def test_manifests_apply_and_converge() -> None:
    workloads = pod_templates()
    scaled = {d["spec"]["scaleTargetRef"]["name"] for d in k8s_documents() if d["kind"] == "HorizontalPodAutoscaler"}
    disrupted = {
        tuple(sorted(d["spec"]["selector"]["matchLabels"].items()))
        for d in k8s_documents()
        if d["kind"] == "PodDisruptionBudget"
    }
    for name, workload in workloads.items():
        spec = workload["spec"]["template"]["spec"]
        assert "replicas" not in workload["spec"] or name not in scaled, f"{name}: replicas beside an HPA"
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert tuple(sorted(workload["spec"]["selector"]["matchLabels"].items())) in disrupted, f"{name}: no PDB"
        for container in spec["containers"]:
            image = container["image"]
            assert ":" in image and not image.endswith(":latest"), image
            assert container["imagePullPolicy"] == "IfNotPresent", name
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert "/tmp" in {m["mountPath"] for m in container.get("volumeMounts", [])}, f"{name}: no writable /tmp"
            assert "httpGet" in container["readinessProbe"] and "httpGet" in container["livenessProbe"], name
            assert "preStop" in container["lifecycle"], name
            # A ConfigMap mounted with subPath never changes in a running pod.
            assert all("subPath" not in m for m in container.get("volumeMounts", [])), name
    policies = [d for d in k8s_documents() if d["kind"] == "NetworkPolicy"]
    assert {tuple(sorted(p["spec"]["podSelector"]["matchLabels"].values())) for p in policies} == {
        ("pagecache", "renderer"),
        ("pagecache", "varnish"),
    }


def test_the_vcl_checksum_annotation_follows_the_vcl() -> None:
    vcl = backends_files()["kubernetes"]
    varnish = pod_templates()["pagecache-varnish"]
    annotation = varnish["spec"]["template"]["metadata"]["annotations"]["pagecache.io/vcl-checksum"]
    assert annotation == hashlib.sha256(vcl.encode()).hexdigest(), "update the checksum: the pods must roll"


def test_no_usable_secret_is_in_the_repository() -> None:
    secrets = [d for d in k8s_documents() if d["kind"] == "Secret"]
    assert secrets and all("EDITOR_TOKENS" in s["stringData"] for s in secrets)
    for secret in secrets:
        assert usable_tokens(_split(secret["stringData"]["EDITOR_TOKENS"])) == ()
    config = next(
        d for d in k8s_documents() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "pagecache-config"
    )
    assert not {"MONGODB_URL", "REDIS_URL", "EDITOR_TOKENS"} & set(config["data"]), "credentials belong in the Secret"


def vcl_seconds(vcl: str, name: str) -> list[float]:
    return [float(value) for value in re.findall(rf"\.{name}\s*=\s*([0-9.]+)s;", vcl)]


def test_timeouts_nest_and_termination_waits_for_a_publish() -> None:
    settings = Settings()
    for where, vcl in backends_files().items():
        # A backend timeout shorter than the renderer's deadline turns its own answer (stale
        # page, 503 with Retry-After) into Varnish's error.
        for timeout in vcl_seconds(vcl, "first_byte_timeout"):
            assert timeout > settings.request_deadline, where
    drain = max(settings.request_deadline, settings.publish_deadline) + 1
    closing = settings.publish_deadline + 3
    renderer = pod_templates()["pagecache-renderer"]["spec"]["template"]["spec"]
    pre_stop = int(renderer["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert renderer["terminationGracePeriodSeconds"] > pre_stop + drain + closing
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    grace = compose["x-renderer"]["stop_grace_period"]
    assert int(grace.removesuffix("s")) > drain + closing


def test_the_lock_file_pins_every_dependency_with_hashes() -> None:
    lock = (REPO / "requirements.lock").read_text()
    setup = (REPO / "setup.py").read_text()
    required = re.findall(r'"([a-z0-9-]+)(?:\[[a-z]+\])?>=', setup.split("install_requires=[", 1)[1].split("]", 1)[0])
    for name in required:
        assert re.search(rf"^{re.escape(name)}==", lock, re.MULTILINE | re.IGNORECASE), name
    pins = re.findall(r"^[A-Za-z0-9_.-]+==\S+ \\$", lock, re.MULTILINE)
    assert pins and lock.count("--hash=sha256:") >= len(pins)
