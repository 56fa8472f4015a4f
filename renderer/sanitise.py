"""Article bodies made safe to embed: the allow-list, and the mark a cleaned body carries.

A publish cleans the editor's HTML once and stores it with ``SANITISED_BY`` (the allow-list and
nh3 version it was cleaned under); a render uses a body so marked as it is, and cleans any other
(written straight into MongoDB, or under an older list), so a changed list reaches every page
without a migration. devstack stores its samples and the bench's articles the way a publish does;
the tests write bodies as given, so that they reach the cleaning a render does.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from typing import Any

import nh3

# What an article body may hold; everything else (scripts, handlers, javascript: URLs) goes.
ALLOWED_TAGS = {
    "p", "br", "h2", "h3", "h4", "strong", "em", "b", "i", "u", "a", "ul", "ol", "li",
    "blockquote", "figure", "figcaption", "img", "cite", "q", "hr", "span", "sub", "sup",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "width", "height"}}
URL_SCHEMES = {"http", "https", "mailto"}
LINK_REL = "noopener noreferrer"


def sanitise_html(html: str) -> str:
    """Article HTML from the CMS made safe to embed (no stored XSS)."""
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel=LINK_REL,
    )


# The stored field, and the mark of the current allow-list and nh3: what a publish writes beside the body.
SANITISED_BY_FIELD = "body_html_sanitised_by"
SANITISED_BY = "nh3 {} {}".format(
    importlib.metadata.version("nh3"),
    hashlib.sha256(
        repr(
            (
                sorted(ALLOWED_TAGS),
                sorted((t, sorted(a)) for t, a in ALLOWED_ATTRIBUTES.items()),
                sorted(URL_SCHEMES),
                LINK_REL,
            )
        ).encode()
    ).hexdigest()[:12],
)


def safe_body(doc: dict[str, Any]) -> str:
    """The article's body ready to embed: cleaned at publish, or now."""
    if doc.get(SANITISED_BY_FIELD) == SANITISED_BY:
        return str(doc["body_html"])
    return sanitise_html(doc["body_html"])
