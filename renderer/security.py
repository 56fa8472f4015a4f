"""Security headers every page carries, and the Content-Security-Policy that allows exactly what
the templates use: one inline ``<style>`` block (by its hash), images from the site and https
hosts, fetches from the site itself, and JSON-LD data blocks (not scripts the browser runs, so no
script source at all); features, openers and embedding by other sites refused."""

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
            # The page makes no requests of its own; tools that audit it (Lighthouse reads
            # /robots.txt) fetch from the site, and only from it.
            "connect-src 'self'",
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
        # No powerful feature is used by a news page: none may be, by it or anything it embeds.
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=(), browsing-topics=()",
        # A page opens no window that may reach back into it, and is no other site's subresource.
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
    if hsts_max_age > 0:
        headers["Strict-Transport-Security"] = f"max-age={hsts_max_age}; includeSubDomains"
    return headers
