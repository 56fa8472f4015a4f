"""``pagecache-editor``: publish, unpublish and purge from the command line; show pending purges.

    pagecache-editor publish article.json [--slug SLUG] [--if-match ETAG]
    pagecache-editor unpublish SLUG
    pagecache-editor purge --slug SLUG | --key KEY [--key KEY ...]
    pagecache-editor queue

The API is at ``--url`` (``PAGECACHE_API``, default http://127.0.0.1:8888) and the token is
``--token`` (``EDITOR_TOKEN``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def call(url: str, token: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> int:
    """Send one API request, print the JSON answer, and return a shell exit status."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url.rstrip("/") + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            status, text = resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    except urllib.error.URLError as exc:
        print(f"cannot reach {url}: {exc.reason}", file=sys.stderr)
        return 2
    try:
        print(json.dumps(json.loads(text), indent=2, ensure_ascii=False))
    except ValueError:
        print(text)
    if status >= 400:
        print(f"HTTP {status}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pagecache-editor``."""
    parser = argparse.ArgumentParser(prog="pagecache-editor", description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("PAGECACHE_API", "http://127.0.0.1:8888"))
    parser.add_argument("--token", default=os.environ.get("EDITOR_TOKEN", ""))
    commands = parser.add_subparsers(dest="command", required=True)
    publish = commands.add_parser("publish", help="create or update an article from a JSON file")
    publish.add_argument("file", type=Path)
    publish.add_argument("--slug", help="the article's slug (default: the file's 'slug' field)")
    publish.add_argument("--if-match", help="only if the article is still at this ETag")
    unpublish = commands.add_parser("unpublish", help="remove an article from every tier")
    unpublish.add_argument("slug")
    purge = commands.add_parser("purge", help="soft-purge an article or surrogate keys on every Varnish node")
    purge.add_argument("--slug")
    purge.add_argument("--key", action="append", default=[])
    commands.add_parser("queue", help="show purges waiting for an unreachable Varnish node")
    args = parser.parse_args(argv)
    if not args.token and args.command != "queue":
        parser.error("an editor token is needed: --token or EDITOR_TOKEN")

    if args.command == "publish":
        payload = json.loads(args.file.read_text())
        slug = args.slug or payload.pop("slug", None)
        payload.pop("slug", None)
        if not slug:
            parser.error("no slug: pass --slug or put a 'slug' field in the file")
        headers = {"If-Match": args.if_match} if args.if_match else None
        return call(args.url, args.token, "PUT", f"/api/articles/{slug}", payload, headers)
    if args.command == "unpublish":
        return call(args.url, args.token, "DELETE", f"/api/articles/{args.slug}")
    if args.command == "purge":
        body: dict[str, Any] = {}
        if args.slug:
            body["slug"] = args.slug
        if args.key:
            body["keys"] = args.key
        if not body:
            parser.error("purge needs --slug or --key")
        return call(args.url, args.token, "POST", "/api/purge", body)
    return call(args.url, args.token, "GET", "/api/purge/pending")


if __name__ == "__main__":
    sys.exit(main())
