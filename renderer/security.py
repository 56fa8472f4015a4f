"""Security headers every page carries, and the Content-Security-Policy that allows exactly what
the templates use: one inline ``<style>`` block (by its hash), images from the site and https
hosts, and JSON-LD data blocks (not scripts the browser runs, so no script source at all)."""

from __future__ import annotations

import base64
import hashlib
import re

_STYLE_BLOCK = re.compile(r"<style>(.*?)</style>", re.DOTALL)


def style_hashes(html: str) -> list[str]:
    """CSP hash sources (``'sha256-…'``) of every inline ``<style>`` block in ``html``."""
    blocks = _STYLE_BLOCK.findall(html)
    return [f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks]


def page_headers(rendered_page: str, hsts_max_age: int) -> dict[str, str]:
    """The headers of every HTML page, given one page as rendered (every page shares the base
    template's style block; the template engine reshapes its whitespace, so hash what it outputs).
    HSTS only when configured (TLS terminates upstream)."""
    csp = "; ".join(
        [
            "default-src 'none'",
            f"style-src {' '.join(style_hashes(rendered_page))}",
            "img-src 'self' https: data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    headers = {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "strict-origin-when-cross-origin",
        "X-Frame-Options": "DENY",
    }
    if hsts_max_age > 0:
        headers["Strict-Transport-Security"] = f"max-age={hsts_max_age}; includeSubDomains"
    return headers
