"""The OpenAPI 3.1 document of the editors' API, built from the same field table as validation."""

from __future__ import annotations

from typing import Any

from renderer import contract
from renderer.articles import FIELDS


def _article_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [name for name, (required, _, _) in FIELDS.items() if required],
        "properties": {name: schema for name, (_, _, schema) in FIELDS.items()},
    }


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    content = {"application/json": {"schema": schema or {"$ref": "#/components/schemas/Error"}}}
    return {"description": description, "content": content}


def document() -> dict[str, Any]:
    """The document served at ``/api/openapi.json``."""
    slug = {
        "name": "slug",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": contract.SLUG_PATTERN.pattern, "maxLength": contract.SLUG_MAX_LENGTH},
    }
    if_match = {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"}}
    errors = {
        "400": _json("invalid request"),
        "401": _json("no editor token"),
        "403": _json("token not allowed"),
        "412": _json("version conflict (If-Match)"),
        "503": _json("MongoDB could not take the change; retry"),
    }
    report = {"$ref": "#/components/schemas/Report"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "pagecache editors' API", "version": "1.0.0"},
        "components": {
            "securitySchemes": {"editorToken": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Article": _article_schema(),
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
                "Report": {"type": "object", "additionalProperties": True},
                "Purge": {
                    "type": "object",
                    "additionalProperties": False,
                    "minProperties": 1,
                    "properties": {
                        "slug": slug["schema"],
                        "keys": {"type": "array", "minItems": 1, "maxItems": 100, "items": {"type": "string"}},
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
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Article"}}},
                    },
                    "responses": {
                        "200": _json("updated", report),
                        "201": _json("created", report),
                        "413": _json("body too large"),
                        "415": _json("body is not JSON"),
                        **errors,
                    },
                },
                "delete": {
                    "summary": "Unpublish an article from every tier",
                    "parameters": [slug, if_match],
                    "responses": {"200": _json("unpublished", report), "404": _json("no such article"), **errors},
                },
            },
            "/api/purge": {
                "post": {
                    "summary": "Soft-purge an article or surrogate keys on every Varnish node",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Purge"}}},
                    },
                    "responses": {"200": _json("purged or queued", report), "415": _json("body is not JSON"), **errors},
                },
            },
            "/api/purge/pending": {
                "get": {
                    "summary": "Purges waiting for an unreachable node",
                    "responses": {"200": _json("queue", report)},
                },
            },
        },
    }
