"""``python -m devstack``: the whole stack with sample articles, until Ctrl-C (scripts/run)."""

from __future__ import annotations

import os
import secrets
import signal
import sys
import tempfile
from pathlib import Path

from devstack.samples import load_samples
from devstack.stack import CURRENT_STACK, Ports, Stack, start_stack


def node_names(stack: Stack) -> list[str]:
    """The Varnish nodes' names, in start order (as the purge log knows them)."""
    return [name for name in stack.started if name.startswith("varnish")]


def main() -> int:
    """Start everything not given by environment, load samples, print the URL, wait for Ctrl-C."""
    run_dir = Path(os.environ.get("PAGECACHE_RUN_DIR") or tempfile.mkdtemp(prefix="pagecache-run-"))
    defaults = Ports.defaults()
    ports = Ports(
        redis=int(os.environ.get("REDIS_PORT", defaults.redis)),
        mongodb=int(os.environ.get("MONGODB_PORT", defaults.mongodb)),
        renderer=int(os.environ.get("PORT", defaults.renderer)),
        varnish=int(os.environ.get("VARNISH_PORT", defaults.varnish)),
        varnish_admin=int(os.environ.get("VARNISH_ADMIN_PORT", defaults.varnish_admin)),
    )
    environ = dict(os.environ)
    # Editors need a token; a fresh one per run unless EDITOR_TOKENS names some.
    environ.setdefault("EDITOR_TOKENS", "dev-" + secrets.token_urlsafe(32))
    # REDIS_SENTINEL=1: Redis as a primary, a replica and three sentinels, as in production.
    # CDN=emulated: a second Varnish as the CDN in front (on CDN_PORT, 6080), purged through a stub
    # of the API CDN_PURGER names (fastly, the default, or cloudflare).
    cdn = None
    if environ.get("CDN") == "emulated":
        cdn = environ.get("CDN_PURGER", "none")
        cdn = "fastly" if cdn == "none" else cdn
    elif environ.get("CDN"):
        raise SystemExit(f"CDN={environ['CDN']}: the only local CDN is CDN=emulated")
    stack = start_stack(
        run_dir,
        ports,
        environ,
        # VARNISH_NODES=N: N Varnish nodes, each with its purge agent (no list anywhere).
        varnish_nodes=int(environ.get("VARNISH_NODES", "1")),
        redis_sentinel=environ.get("REDIS_SENTINEL") == "1",
        cdn=cdn,
        cdn_port=int(environ.get("CDN_PORT", 6080)),
    )
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        CURRENT_STACK.parent.mkdir(parents=True, exist_ok=True)
        CURRENT_STACK.write_text(str(stack.save_state()))
        count = load_samples(stack.env["MONGODB_URL"], stack.env["MONGODB_DB"], stack.env["REDIS_URL"])
        print(f"Loaded {count} sample articles. Logs in {run_dir}", flush=True)
        print(f"Editors' token: {environ['EDITOR_TOKENS'].split(',')[0]}", flush=True)
        if stack.cdn_url:
            print(f"Emulated CDN ({cdn} API at {stack.cdn_api_url}) in front of {stack.public_urls[0]}", flush=True)
        for name, public, agent in zip(node_names(stack), stack.public_urls, stack.agent_urls, strict=True):
            print(f"Varnish node {name}: {public}/  (its purge agent: {agent}/ready)", flush=True)
        print(f"pagecache is up: {stack.site_url}/  (renderer {stack.renderer_url}, Ctrl-C stops it)", flush=True)
        while not stopping:
            signal.pause()
    finally:
        print("stopping…", file=sys.stderr, flush=True)
        stack.refresh_from_state()
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
