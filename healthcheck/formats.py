"""The two output formats of one report: the seed's (py-healthcheck's) and the IETF draft's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from healthcheck.runner import DEGRADED, FAILURE, SUCCESS, Report

HEALTH_JSON = "application/health+json"
_IETF_STATUS = {SUCCESS: "pass", DEGRADED: "warn", FAILURE: "fail"}


def http_status(report: Report) -> int:
    """200 for success and degraded (one shared outage must not drop every instance), else 503."""
    return 503 if report.status == FAILURE else 200


def seed_format(report: Report) -> dict[str, Any]:
    """``{"hostname", "status", "timestamp", "results": [{"checker", "passed", "output", ...}]}``."""
    results = []
    for r in report.results:
        item: dict[str, Any] = {
            "checker": r.checker,
            "passed": r.passed,
            "output": r.output,
            "timestamp": r.timestamp,
            "expires": r.expires,
            "response_time_ms": r.response_time_ms,
            "critical": r.critical,
        }
        if r.breaker is not None:
            item["breaker"] = r.breaker
        results.append(item)
    return {"hostname": report.hostname, "status": report.status, "timestamp": report.timestamp, "results": results}


def ietf_format(report: Report, service_id: str = "pagecache") -> dict[str, Any]:
    """draft-inadarei-api-health-check: ``status`` pass/warn/fail, ``checks`` keyed component:measurement."""
    checks: dict[str, list[dict[str, Any]]] = {}
    for r in report.results:
        if r.passed:
            status = "pass"
        else:
            status = "fail" if r.critical and not r.covered else "warn"
        entry: dict[str, Any] = {
            "componentId": r.checker,
            "componentType": "datastore",
            "observedValue": r.response_time_ms,
            "observedUnit": "ms",
            "status": status,
            "time": _iso(r.timestamp),
        }
        if not r.passed or r.breaker not in (None, "closed"):
            entry["output"] = r.output
        checks.setdefault(f"{r.component}:responseTime", []).append(entry)
    return {
        "status": _IETF_STATUS[report.status],
        "serviceId": service_id,
        "description": f"{service_id} on {report.hostname}",
        "checks": checks,
    }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")
