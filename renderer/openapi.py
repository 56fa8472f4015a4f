"""The OpenAPI 3.1 document of the editors' API, built from the same field table as validation."""

from __future__ import annotations

from typing import Any

from renderer import contract
from renderer.articles import ANY_PUBLIC_IMAGE, IMAGE_FIELDS, MAX_DEPTH, SURROGATE_KEY, ArticleRules, article_fields


def _article_schema(rules: ArticleRules) -> dict[str, Any]:
    fields = article_fields(rules)
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [name for name, (required, _, _) in fields.items() if required],
        "properties": {name: schema for name, (_, _, schema) in fields.items()},
        "dependentRequired": {name: [other for other in IMAGE_FIELDS if other != name] for name in IMAGE_FIELDS},
    }


def _json(
    description: str, schema: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    content = {"application/json": {"schema": schema or {"$ref": "#/components/schemas/Error"}}}
    response: dict[str, Any] = {"description": description, "content": content}
    if headers:
        response["headers"] = {
            name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()
        }
    return response


def document(max_bytes: int, rules: ArticleRules = ANY_PUBLIC_IMAGE) -> dict[str, Any]:
    """The document served at ``/api/openapi.json``: what the server enforces, no more, no less."""
    slug = {
        "name": "slug",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": contract.SLUG_PATTERN.pattern, "maxLength": contract.SLUG_MAX_LENGTH},
    }
    if_match = {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"}}
    report = {"$ref": "#/components/schemas/Report"}
    # Every operation: the token, the body cap, a method the path lacks.
    common = {
        "401": _json("no editor token", headers={"WWW-Authenticate": "Bearer realm"}),
        "403": _json("the token may not publish"),
        "405": _json("method not allowed on this path", headers={"Allow": "the path's methods"}),
        "413": _json(f"body larger than {max_bytes} bytes"),
    }
    writes = {
        **common,
        "400": _json(f"invalid request: schema, JSON nested deeper than {MAX_DEPTH}, invalid Unicode"),
        "202": _json("committed; some Varnish purges are queued (see 'pending')", report),
        "503": _json(
            "not fully applied: nothing committed ('committed' absent), or committed with a failed step; "
            "send the same request again",
            headers={"Retry-After": "seconds"},
        ),
    }
    body_note = f"At most {max_bytes} bytes (PUBLISH_MAX_BYTES); JSON nested at most {MAX_DEPTH} levels."

    def json_body(schema: str) -> dict[str, Any]:
        return {
            "required": True,
            "description": body_note,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        }

    return {
        "openapi": "3.1.0",
        "info": {"title": "pagecache editors' API", "version": "1.0.0"},
        "x-max-body-bytes": max_bytes,
        "components": {
            "securitySchemes": {"editorToken": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Article": _article_schema(rules),
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
                "Report": {"type": "object", "additionalProperties": True},
                "Purge": {
                    "type": "object",
                    "additionalProperties": False,
                    "minProperties": 1,
                    "properties": {
                        "slug": slug["schema"],
                        "keys": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": 100,
                            "items": {"type": "string", "pattern": f"^{SURROGATE_KEY.pattern}$"},
                        },
                    },
                },
            },
        },
        "security": [{"editorToken": []}],
        "paths": {
            "/api/articles/{slug}": {
                "put": {
                    "summary": "Create or update an article, re-render it and purge every Varnish node",
                    "parameters": [slug, if_match],
                    "requestBody": json_body("Article"),
                    "responses": {
                        "200": _json("updated", report),
                        "201": _json("created", report),
                        "412": _json("If-Match names an older version"),
                        "415": _json("body is not declared JSON"),
                        **writes,
                    },
                },
                "delete": {
                    "summary": "Unpublish an article from every tier",
                    "parameters": [slug, if_match],
                    "responses": {
                        "200": _json("unpublished", report),
                        "404": _json("no such article"),
                        "412": _json("If-Match names an older version"),
                        **writes,
                    },
                },
            },
            "/api/purge": {
                "post": {
                    "summary": "Soft-purge an article or surrogate keys on every Varnish node",
                    "requestBody": json_body("Purge"),
                    "responses": {
                        "200": _json("purged on every node", report),
                        "415": _json("body is not declared JSON"),
                        **{code: r for code, r in writes.items() if code != "503"},
                    },
                },
            },
            "/api/purge/pending": {
                "get": {
                    "summary": "Purges waiting for an unreachable node",
                    "responses": {
                        "200": _json("the queue", report),
                        "503": _json("the queue's store is unreachable; retry", headers={"Retry-After": "seconds"}),
                        **common,
                    },
                },
            },
        },
    }
