"""pagecache's Grafana dashboard, built with Grafana's own grafana-foundation-sdk.

    python deploy/grafana/dashboard.py > deploy/grafana/pagecache.json

A test checks that the committed JSON is what this builds, and runs every panel's query against a
real Prometheus scraping a real renderer.
"""

from __future__ import annotations

import sys
from typing import Any

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.timeseries import Panel
from grafana_foundation_sdk.cog.encoder import JSONEncoder

# (row, title, unit, [(PromQL, legend)]): what an operator looks at, top to bottom.
PANELS: list[tuple[str, str, str, list[tuple[str, str]]]] = [
    (
        "Traffic",
        "Renderer answers by tier (share)",
        "percentunit",
        [
            (
                "sum by (tier) (rate(pagecache_requests_total[5m])) / scalar(sum(rate(pagecache_requests_total[5m])))",
                "{{tier}}",
            )
        ],
    ),
    (
        "Traffic",
        "Answer latency by tier (p50, p99)",
        "s",
        [
            ("histogram_quantile(0.5, sum by (tier, le) (rate(pagecache_request_seconds_bucket[5m])))", "p50 {{tier}}"),
            (
                "histogram_quantile(0.99, sum by (tier, le) (rate(pagecache_request_seconds_bucket[5m])))",
                "p99 {{tier}}",
            ),
        ],
    ),
    (
        "Traffic",
        "MongoDB reads by path",
        "reqps",
        [("sum by (path) (rate(pagecache_mongodb_reads_total[5m]))", "{{path}}")],
    ),
    (
        "Failures",
        "Circuit breakers (0 closed, 1 half-open, 2 open)",
        "none",
        [("max by (backend) (pagecache_breaker_state)", "{{backend}}")],
    ),
    (
        "Failures",
        "Stale pages served",
        "reqps",
        [("sum by (reason) (rate(pagecache_stale_pages_served_total[5m]))", "{{reason}}")],
    ),
    (
        "Failures",
        "Age of stale pages served (p50, p99)",
        "s",
        [
            ("histogram_quantile(0.5, sum by (le) (rate(pagecache_stale_page_age_seconds_bucket[5m])))", "p50"),
            ("histogram_quantile(0.99, sum by (le) (rate(pagecache_stale_page_age_seconds_bucket[5m])))", "p99"),
        ],
    ),
    (
        "Publishing",
        "Varnish nodes behind the purge log, and CDN purges dropped",
        "none",
        [
            ("max by (node) (pagecache_purge_node_lag_seconds)", "{{node}} behind the purge log (s)"),
            ("sum(increase(pagecache_purges_dropped_total[1h])) or vector(0)", "dropped in the last hour"),
        ],
    ),
    (
        "Publishing",
        "Background refreshes by outcome",
        "reqps",
        [("sum by (outcome) (rate(pagecache_background_refreshes_total[5m])) or vector(0)", "{{outcome}}")],
    ),
    (
        "Processes",
        "Worker restarts (last hour)",
        "none",
        [("sum(increase(pagecache_worker_restarts_total[1h])) or vector(0)", "restarts")],
    ),
]


def queries() -> list[str]:
    """Every PromQL expression on the dashboard."""
    return [expr for _, _, _, targets in PANELS for expr, _ in targets]


def build() -> Any:
    """The dashboard model."""
    dashboard = Dashboard("pagecache").uid("pagecache").tags(["pagecache"]).refresh("30s").time("now-3h", "now")
    row = None
    for row_title, title, unit, targets in PANELS:
        if row_title != row:
            dashboard = dashboard.with_row(Row(row_title))
            row = row_title
        panel = Panel().title(title).unit(unit)
        for ref, (expr, legend) in zip("ABCDEFGH", targets):
            panel = panel.with_target(Dataquery().expr(expr).legend_format(legend).ref_id(ref))
        dashboard = dashboard.with_panel(panel)
    return dashboard.build()


def render() -> str:
    """The dashboard as the JSON Grafana imports."""
    return JSONEncoder(sort_keys=True, indent=2).encode(build()) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
