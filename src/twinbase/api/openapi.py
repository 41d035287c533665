"""The OpenAPI document: built once from the routes and the ``DOCS`` each API module declares.

Routes read their bodies and query strings themselves (one pydantic validation, the API's own error
shape, no FastAPI dependency solving on the hot path), so FastAPI cannot see what they accept or
answer. Each API module therefore ends with ``DOCS``: one ``Op`` per route function, saying its
summary, request body, query parameters, success answer and the errors beyond the common ones.
``build_document`` joins them with the routes and adds what every operation shares: the bearer
security scheme, the error shape, 401/406/429 and, by rule, 404 (path ids), 422 (input) and 413
(bodies). ``tests/test_openapi.py`` fails when a route has no ``Op`` or an ``Op`` no route.

Operation ids are ``<api module>.<function>``, suffixed when one function serves two paths or methods:
stable across releases and unique.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from twinbase.api.http import API_VERSIONS
from twinbase.api.schemas import ErrorResponse
from twinbase.domain.listing import MAX_INT

COMPONENT_REF = "#/components/schemas/"


@dataclass(frozen=True)
class Param:
    """A query (or header) parameter: ``schema`` is a JSON schema fragment."""

    name: str
    schema: Mapping[str, Any]
    description: str = ""
    required: bool = False
    location: str = "query"


@dataclass(frozen=True)
class Link:
    """An OpenAPI link from a success answer to another operation (used by stateful testing)."""

    operation: str
    parameters: Mapping[str, str]


@dataclass(frozen=True)
class Op:
    summary: str
    response: type[BaseModel] | None = None
    status: int = 200
    # Media type of the success body: JSON by default; binary answers name theirs (image/png, ...).
    media: str | None = "application/json"
    body: type[BaseModel] | None = None
    # Non-JSON request bodies (images, file bytes): their media types, with a binary schema.
    body_media: tuple[str, ...] = ()
    body_required: bool = True
    # An ``application/x-www-form-urlencoded`` body (the OAuth endpoints).
    form: type[BaseModel] | None = None
    # The error shape: the APIs' own, or OAuth's ``{error, error_description}`` on /connect.
    error_model: type[BaseModel] = ErrorResponse
    query: tuple[Param, ...] = ()
    # Statuses beyond the common ones (409 conflicts, 403 where no path id implies it, ...).
    errors: frozenset[int] = frozenset()
    # Reached without a bearer token (signed links, the sign-in endpoints).
    public: bool = False
    links: Mapping[str, Link] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    extra_responses: Mapping[int, str] = field(default_factory=dict)
    description: str = ""


def api_docs(*pairs: tuple[Any, Op]) -> dict[str, Op]:
    """``DOCS = api_docs((route_function, Op(...)), ...)``: keyed by the function's name."""
    return {fn.__name__: op for fn, op in pairs}


# ------------------------------------------------------------------------------------- shared params


def integer(low: int, high: int = MAX_INT, default: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": low, "maximum": high}
    if default is not None:
        schema["default"] = default
    return schema


def string(max_length: int | None = None, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", **extra}
    if max_length is not None:
        schema["maxLength"] = max_length
    return schema


def enum(*values: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


def top(high: int = 1000, low: int = 1) -> Param:
    return Param("$top", integer(low, high), "Page size.")


SKIP = Param("$skip", integer(0, MAX_INT), "How many items to skip.")
CONTINUATION = Param("$continuationToken", string(), "Opaque token from a previous page's `next` link.")
SEARCH = Param("$search", string(255), "Case-insensitive substring of the name.")
PREFER = Param(
    "Prefer",
    string(255),
    "`return=representation` for whole items; anything else (or nothing) gives the minimal shape.",
    location="header",
)


def order_by(*fields: str, name: str = "$orderBy") -> Param:
    """The accepted ``$orderBy`` values: each field, alone or with ``asc`` / ``desc``."""
    values = [v for f in fields for v in (f, f"{f} asc", f"{f} desc")]
    return Param(name, enum(*values), "Order of the items.")


def paging(high: int = 1000, low: int = 1) -> tuple[Param, ...]:
    return (top(high, low), SKIP, CONTINUATION)


# ------------------------------------------------------------------------------------------ builder


_CONVERTOR = re.compile(r"\{([^}:]+)(?::[^}]+)?\}")
_COMMON_ERRORS = {
    401: "No valid bearer token (`HeaderNotFound`, `InvalidAuthorizationScheme`, `Unauthorized`).",
    403: "The caller lacks the permission (`InsufficientPermissions`).",
    404: "Not found, or not visible to the caller.",
    406: "The `Accept` header asks for an API version this API does not serve.",
    409: "Conflicts with the current state.",
    413: "The request body is too large.",
    422: "Invalid input: `details` names each problem and its `target`.",
    429: "Too many requests: wait `Retry-After` seconds.",
}


def _error_statuses(path: str, method: str, op: Op, has_input: bool) -> set[int]:
    statuses = set(op.errors)
    if not op.public:
        statuses |= {401, 429}
    if any(path.startswith(prefix) for prefix, _ in API_VERSIONS):
        statuses.add(406)
    if "{" in path:
        statuses.add(404)
    if has_input:
        statuses.add(422)
    if op.body is not None or op.body_media or op.form is not None:
        statuses |= {413, 422}
    return statuses


def _operation_id(module: str, name: str, seen: dict[str, int]) -> str:
    base = f"{module}.{name}"
    n = seen.get(base, 0)
    seen[base] = n + 1
    return base if n == 0 else f"{base}.{n + 1}"


def _schema_ref(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=COMPONENT_REF + "{model}", mode="serialization")
    for name, sub in schema.pop("$defs", {}).items():
        components.setdefault(name, sub)
    components.setdefault(model.__name__, schema)
    return {"$ref": COMPONENT_REF + model.__name__}


def _request_schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    """Request bodies are documented as validated (input mode), under their own component name."""
    schema = model.model_json_schema(ref_template=COMPONENT_REF + "{model}", mode="validation")
    for name, sub in schema.pop("$defs", {}).items():
        components.setdefault(name, sub)
    components.setdefault(model.__name__, schema)
    return {"$ref": COMPONENT_REF + model.__name__}


def build_document(app: FastAPI, modules: Iterable[ModuleType]) -> dict[str, Any]:
    docs: dict[int, tuple[str, dict[str, Op]]] = {}
    for module in modules:
        declared: dict[str, Op] = getattr(module, "DOCS", {})
        docs[id(module)] = (module.__name__.rsplit(".", 1)[-1], declared)
    by_function: dict[tuple[str, str], tuple[str, Op]] = {}
    for module in modules:
        short, declared = docs[id(module)]
        for name, op in declared.items():
            by_function[(module.__name__, name)] = (short, op)

    components: dict[str, Any] = {}
    error_ref = _schema_ref(ErrorResponse, components)
    paths: dict[str, dict[str, Any]] = {}
    seen_ids: dict[str, int] = {}
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        found = by_function.get((route.endpoint.__module__, route.endpoint.__name__))
        if found is None:
            raise LookupError(f"no OpenAPI Op for {route.endpoint.__module__}.{route.endpoint.__name__}")
        short, op = found
        path = _CONVERTOR.sub(r"{\1}", route.path)
        path_params = _CONVERTOR.findall(route.path)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            operation = _operation(op, path, method, path_params, components, error_ref)
            operation["operationId"] = _operation_id(short, route.endpoint.__name__, seen_ids)
            operation["tags"] = [_tag(path)]
            paths.setdefault(path, {})[method.lower()] = operation

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "twinbase",
            "version": app.version,
            "summary": "Self-hosted iTwin Platform APIs: iTwins, access control, iModels v2 and Mesh Export.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A token with the `itwin-platform` scope (`twinbase token`, or "
                    "`POST /connect/token`).",
                }
            },
        },
        "security": [{"bearer": []}],
    }


def _tag(path: str) -> str:
    if path.startswith("/accesscontrol"):
        return "Access control"
    if path.startswith("/imodels"):
        return "iModels"
    if path.startswith("/itwins"):
        return "iTwins"
    if path.startswith(("/mesh-export", "/exports")):
        return "Mesh Export"
    if path.startswith("/blobs"):
        return "Signed file links"
    return "Identity"


def _operation(
    op: Op,
    path: str,
    method: str,
    path_params: list[str],
    components: dict[str, Any],
    error_ref: dict[str, Any],
) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in path_params
    ]
    for p in op.query:
        param: dict[str, Any] = {"name": p.name, "in": p.location, "schema": dict(p.schema)}
        if p.required:
            param["required"] = True
        if p.description:
            param["description"] = p.description
        parameters.append(param)

    operation: dict[str, Any] = {"summary": op.summary}
    if op.description:
        operation["description"] = op.description
    if parameters:
        operation["parameters"] = parameters
    if op.body is not None:
        operation["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": _request_schema(op.body, components)}},
        }
    elif op.form is not None:
        operation["requestBody"] = {
            "required": op.body_required,
            "content": {
                "application/x-www-form-urlencoded": {"schema": _request_schema(op.form, components)}
            },
        }
    elif op.body_media:
        operation["requestBody"] = {
            "required": op.body_required,
            "content": {m: {"schema": {"type": "string", "format": "binary"}} for m in op.body_media},
        }
    if op.public:
        operation["security"] = []

    success: dict[str, Any] = {"description": op.summary}
    if op.response is not None:
        success["content"] = {
            op.media or "application/json": {"schema": _schema_ref(op.response, components)}
        }
    elif op.media and op.media != "application/json":
        success["content"] = {op.media: {"schema": {"type": "string", "format": "binary"}}}
    if op.headers:
        success["headers"] = {
            name: {"description": text, "schema": {"type": "string"}} for name, text in op.headers.items()
        }
    if op.links:
        success["links"] = {
            name: {"operationId": link.operation, "parameters": dict(link.parameters)}
            for name, link in op.links.items()
        }
    responses: dict[str, Any] = {str(op.status): success}
    for status, text in op.extra_responses.items():
        responses[str(status)] = {"description": text}
    has_input = bool(op.query) or bool(path_params)
    error_schema = error_ref if op.error_model is ErrorResponse else _schema_ref(op.error_model, components)
    for status in sorted(_error_statuses(path, method, op, has_input)):
        text = _COMMON_ERRORS.get(status, "Error.")
        entry: dict[str, Any] = {
            "description": text,
            "content": {"application/json": {"schema": error_schema}},
        }
        if status == 429:
            entry["headers"] = {
                "Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait."}
            }
        responses.setdefault(str(status), entry)
    operation["responses"] = responses
    return operation


def install_docs(app: FastAPI, modules: list[ModuleType]) -> None:
    """``/openapi.json`` (built on first request, then kept) and ``/docs``, Swagger UI served by
    twinbase itself from a Python package: it works offline and behind an air gap, no CDN."""
    import swagger_ui_bundle  # type: ignore[import-untyped]

    cached: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not cached:
            cached.update(build_document(app, modules))
        return cached

    app.openapi = openapi  # type: ignore[method-assign]
    app.mount(
        "/docs/assets", StaticFiles(directory=Path(swagger_ui_bundle.swagger_ui_path)), name="docs-assets"
    )

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="twinbase API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
        )
