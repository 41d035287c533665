"""Cross-cutting HTTP behaviour, written once for every API.

- error rendering: every failure leaves as ``{"error": {"code", "message", "details"?}}``;
- request ids and per-client rate limiting (a pure ASGI middleware, cheap on the hot path);
- JSON bodies parsed into pydantic models with one detail per problem;
- ``Prefer`` and paging helpers that build absolute ``_links``.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlencode

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twinbase.api.limits import Limiter
from twinbase.domain.listing import CONTINUATION, SKIP, TOP, Page, Paging, continuation_token
from twinbase.errors import (
    ErrorDetail,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimitExceeded,
    ServiceUnavailable,
    TwinbaseError,
)
from twinbase.identity.tokens import Principal, TokenVerifier
from twinbase.store.shared import SharedState

log = logging.getLogger("twinbase.http")

ModelT = TypeVar("ModelT", bound=BaseModel)


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)

    @classmethod
    def from_bytes(cls, body: bytes, status_code: int = 200) -> Response:
        return Response(body, status_code=status_code, media_type=cls.media_type)


def no_content() -> Response:
    return Response(status_code=204)


def error_response(exc: TwinbaseError) -> Response:
    return JSON(exc.to_wire(), status_code=exc.status, headers=exc.headers)


# ---------------------------------------------------------------------------------------------- errors


def api_invalid_code(path: str) -> tuple[str, str]:
    """The 422 code and message of the API that owns ``path``."""
    if path.startswith("/accesscontrol"):
        return "InvalidAccessControlRequest", "Cannot perform operation."
    if path.startswith("/imodels"):
        return "InvalidiModelsRequest", "Cannot perform operation."
    if path.startswith(("/mesh-export", "/exports")):
        return "InvalidMeshExportRequest", "Cannot perform operation."
    if path.startswith("/export/"):
        return "InvalidExportConnectionRequest", "Cannot perform operation."
    return "InvalidiTwinsRequest", "Cannot perform operation."


def _rate_limited(path: str, retry_after: str) -> RateLimitExceeded:
    """429 as the API that owns ``path`` spells it: the Export API (seed 004) says ``TooManyRequests``."""
    if path.startswith("/export/"):
        return RateLimitExceeded(
            "More requests were received than the subscription rate-limit allows.",
            code="TooManyRequests",
            headers={"Retry-After": retry_after},
        )
    return RateLimitExceeded(headers={"Retry-After": retry_after})


def json_object(
    raw: bytes,
    invalid: Callable[[ErrorDetail], Exception],
    malformed: str = "The request body is not valid JSON.",
) -> dict[str, Any]:
    """A request body that must be a JSON object; anything else raises ``invalid(detail)`` with one
    ``InvalidRequestBody`` detail (each API names its own 422 code and its malformed-JSON message)."""
    problem: str | None = None
    data: Any = None
    if not raw.strip():
        problem = "The request body is missing."
    else:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            problem = malformed
        else:
            if not isinstance(data, dict):
                problem = "The request body must be a JSON object."
    if problem is not None:
        raise invalid(ErrorDetail("InvalidRequestBody", problem, None))
    return dict(data)


def install_error_handlers(app: FastAPI) -> None:
    async def on_twinbase_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TwinbaseError)
        if exc.status >= 500:
            log.error("request failed", exc_info=exc, extra={"action": "request_failed"})
        return error_response(exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 405:
            return error_response(MethodNotAllowed(headers={"Allow": _allowed_methods(request)}))
        if exc.status_code == 404:
            return error_response(NotFound())
        if exc.status_code == 413:
            return error_response(PayloadTooLarge())
        code, message = api_invalid_code(request.url.path)
        return error_response(InvalidRequest(message, code=code))

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        code, message = api_invalid_code(request.url.path)
        details = _details(list(exc.errors()))
        return error_response(InvalidRequest(message, code=code, details=details))

    async def on_data_error(request: Request, exc: Exception) -> Response:
        # The database refused a value the validation let through (a NUL character in a string,
        # a number past its column): the input is wrong, not the server.
        log.info("database refused a value", extra={"action": "data_error", "error": str(exc)[:200]})
        code, message = api_invalid_code(request.url.path)
        detail = ErrorDetail("InvalidValue", "A value in the request cannot be stored.", None)
        return error_response(InvalidRequest(message, code=code, details=[detail]))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        if type(exc).__module__.startswith("azure."):
            # The blob service failed (or refused): not the client's fault and often brief. Matched by
            # module, so the Azure SDK is imported only where it is the configured backend.
            log.error("blob service failed", exc_info=exc, extra={"action": "blob_service_failed"})
            return error_response(
                ServiceUnavailable("The blob service did not complete the request. Retry later.")
            )
        log.exception("unexpected error", extra={"action": "unexpected_error"})
        return error_response(TwinbaseError())

    app.add_exception_handler(TwinbaseError, on_twinbase_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(DataError, on_data_error)
    app.add_exception_handler(Exception, on_unexpected)


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (RFC 9110 wants them on a 405)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(request.url.path):
            methods |= getattr(route, "methods", None) or set()
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods | {"OPTIONS"}))


def _detail_from_pydantic(err: Mapping[str, Any]) -> ErrorDetail:
    loc = [
        str(p)
        for p in err.get("loc", ())
        if p not in ("body", "query", "path", "header") and not _is_union_tag(p)
    ]
    target = ".".join(loc) or "body"
    kind = str(err.get("type", ""))
    if kind == "missing":
        return ErrorDetail("MissingRequiredProperty", f"Required property '{target}' is missing.", target)
    if kind in ("json_invalid", "model_type", "model_attributes_type") and target == "body":
        return ErrorDetail("InvalidRequestBody", "The request body is not a valid JSON object.", None)
    msg = str(err.get("msg", "invalid value"))
    return ErrorDetail("InvalidValue", f"Provided '{target}' value is not valid. {msg}.", target)


_UNION_TAGS = {"float", "int", "str", "bool", "none", "dict", "list", "json-or-python"}


def _is_union_tag(part: object) -> bool:
    """pydantic names the member of a union it tried (``latitude.float``); clients want ``latitude``."""
    return isinstance(part, str) and (part in _UNION_TAGS or "[" in part)


def _details(errors: list[Any]) -> list[ErrorDetail]:
    out: list[ErrorDetail] = []
    seen: set[tuple[str, str | None]] = set()
    for err in errors:
        detail = _detail_from_pydantic(err)
        if (detail.code, detail.target) not in seen:
            seen.add((detail.code, detail.target))
            out.append(detail)
    return out


def parse_body(raw: bytes, model: type[ModelT], *, code: str, message: str) -> ModelT:
    """Validate a JSON body into ``model``; every problem becomes one 422 detail naming its field."""
    if not raw.strip():
        raise InvalidRequest(
            message, code=code, details=[ErrorDetail("MissingRequestBody", "Request body is missing.", None)]
        )
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            message,
            code=code,
            details=[ErrorDetail("InvalidRequestBody", "The request body is not valid JSON.", None)],
        ) from exc
    if not isinstance(data, dict):
        raise InvalidRequest(
            message,
            code=code,
            details=[ErrorDetail("InvalidRequestBody", "The request body must be a JSON object.", None)],
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(message, code=code, details=_details(list(exc.errors()))) from exc


# ------------------------------------------------------------------------------------------ middleware


_ID_PREFIX = uuid.uuid4().hex[:12]
_ID_COUNTER = itertools.count(1)


def _new_request_id() -> str:
    """Unique per process and across processes (random prefix), without a system call per request."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):012x}"


VERIFIED_CALLER = "twinbase.verified_caller"
"""``scope["state"]`` key: ``(token, Principal | Unauthorized)`` of the rate limiter's verification,
reused by ``api.deps.authenticate`` so a request's token is verified once."""


def split_authorization(value: str) -> tuple[str, str]:
    """``"Bearer  tok "`` -> ``("Bearer", "tok")``: the scheme as sent and the credential, trimmed."""
    scheme, _, credential = value.strip().partition(" ")
    return scheme, credential.strip()


class EdgeMiddleware:
    """Request ids and rate limits, before routing. Pure ASGI: no per-request task or body copy.

    The limit is per verified caller (the token's subject), else per client address: re-spelling a
    token's scheme or spacing, or sending made-up tokens, never earns a fresh budget. The token is
    verified here (through the verifier's cache) and the result handed to the route in
    ``scope["state"][VERIFIED_CALLER]``, so no request pays for two verifications."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        per_minute: int,
        burst: int,
        max_clients: int = 100_000,
        shared: SharedState | None = None,
    ) -> None:
        self.app = app
        self.limiter = Limiter("request", per_minute, burst, max_clients, shared) if per_minute > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if len(path) > 1 and path.endswith("/") and not path.startswith("/blobs/"):
            # `/itwins/` and `/itwins` are the same resource to every client; route one spelling.
            scope = dict(scope)
            scope["path"] = path.rstrip("/") or "/"
            raw = scope.get("raw_path")
            if raw:
                scope["raw_path"] = raw.rstrip(b"/") or b"/"
        headers = dict(scope["headers"])
        request_id = (headers.get(b"x-correlation-id") or headers.get(b"x-request-id") or b"").decode(
            "latin-1"
        )[:128] or _new_request_id()
        id_header = (b"x-request-id", request_id.encode("latin-1"))

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), id_header]
            await send(message)

        if self.limiter is not None and scope["method"] != "OPTIONS" and scope["path"].startswith(_LIMITED):
            wait = await self.limiter.take(_caller_key(scope, headers))
            if wait > 0:
                retry = str(max(1, math.ceil(wait)))
                resp = error_response(_rate_limited(scope["path"], retry))
                await resp(scope, receive, send_with_id)
                return
        accept = headers.get(b"accept")
        if (
            accept
            and b"vnd.bentley" in accept
            and not accepts_api_version(scope["path"], accept.decode("latin-1"))
        ):
            await error_response(UnsupportedApiVersion())(scope, receive, send_with_id)
            return
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Rendered here rather than by Starlette's outermost handler, which re-raises and makes
            # the server drop the keep-alive connection: clients would see the *next* request fail.
            log.exception("unexpected error", extra={"action": "unexpected_error", "request_id": request_id})
            if not started:
                await error_response(TwinbaseError())(scope, receive, send_with_id)


class UnsupportedApiVersion(TwinbaseError):
    status = 406
    code = "InvalidHeaderValue"
    default_message = "The API version requested in the Accept header is not supported."


# API versions each API serves, as ``application/vnd.bentley.itwin-platform.v<N>+json``.
API_VERSIONS: tuple[tuple[str, frozenset[int]], ...] = (
    ("/itwins", frozenset({1})),
    ("/accesscontrol", frozenset({1, 2})),
    ("/imodels", frozenset({1, 2})),
    ("/mesh-export", frozenset({1})),
    ("/exports", frozenset({1})),
    ("/export", frozenset({1})),
)
_VENDOR = re.compile(r"application/vnd\.bentley\.itwin-platform\.v(\d+)\+json")


def accepts_api_version(path: str, accept: str) -> bool:
    """False only when every media type in ``accept`` is a Bentley one of a version this API lacks."""
    versions = next((v for prefix, v in API_VERSIONS if path.startswith(prefix)), None)
    if versions is None:
        return True
    for media in accept.split(","):
        media = media.split(";")[0].strip().lower()
        m = _VENDOR.fullmatch(media)
        if m is None or int(m.group(1)) in versions:
            return True
    return False


_LIMITED = ("/itwins", "/accesscontrol", "/imodels", "/mesh-export", "/export", "/connect")


def _caller_key(scope: Scope, headers: dict[bytes, bytes]) -> str:
    """``sub:<subject>`` for a verified bearer token, else ``ip:<client address>``."""
    auth = headers.get(b"authorization")
    verifier = _verifier(scope)
    if auth and verifier is not None:
        scheme, token = split_authorization(auth.decode("latin-1"))
        if token and scheme.lower() == "bearer":
            result: Principal | TwinbaseError
            try:
                result = verifier.verify(token)
            except TwinbaseError as exc:
                result = exc
            scope.setdefault("state", {})[VERIFIED_CALLER] = (token, result)
            if isinstance(result, Principal):
                return f"sub:{result.user_id}"
    client = scope.get("client")
    return f"ip:{client[0] if client else '-'}"


def _verifier(scope: Scope) -> TokenVerifier | None:
    """The app's token verifier once its services are built (``create_app``'s lifespan)."""
    app = scope.get("app")
    services = getattr(getattr(app, "state", None), "services", None)
    verifier = getattr(services, "verifier", None)
    return verifier if isinstance(verifier, TokenVerifier) else None


def body_limit(max_bytes: int) -> Callable[[Request], Awaitable[bytes]]:
    async def read(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise PayloadTooLarge()
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge()
            chunks.append(chunk)
        return b"".join(chunks)

    return read


# ---------------------------------------------------------------------------------------------- links


def base_url(request: Request, public_url: str) -> str:
    """The public root for absolute links: the configured one, else the scheme and Host of the request."""
    if public_url:
        return public_url
    scope = request.scope
    host = request.headers.get("host")
    if not host:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    # Read from the scope: building ``request.url`` parses the whole URL on every request.
    return f"{scope.get('scheme', 'http')}://{host}"


def prefer(request: Request) -> Literal["minimal", "representation"]:
    value = request.headers.get("prefer", "").replace(" ", "").lower()
    return "representation" if "return=representation" in value else "minimal"


def collection(
    key: str,
    items: list[Any],
    base: str,
    path: str,
    params: Mapping[str, str],
    page: Page[Any],
    *,
    returned: int | None = None,
    continuation: bool = False,
) -> Response:
    """Every list answer: ``{key: items, "_links": {self, prev?, next?}}``.

    ``returned`` is how many rows the page consumed when that is not ``len(items)`` (the lock list
    pages over object ids and groups them into fewer entities). ``continuation``: ``next`` carries a
    ``$continuationToken`` (the platform's newer lists page that way) instead of ``$skip``."""
    links = page_links(
        base,
        path,
        params,
        page.paging,
        returned=len(items) if returned is None else returned,
        has_more=page.more,
        continuation=continuation or page.after is not None,
        after=page.after,
    )
    return JSON({key: items, "_links": links})


# Paging parameters a link sets itself: the request's own are never carried over.
_PAGING_PARAMS = frozenset({TOP, SKIP, CONTINUATION})


def page_links(
    base: str,
    path: str,
    params: Mapping[str, str],
    paging: Paging,
    *,
    returned: int,
    has_more: bool,
    continuation: bool = False,
    after: tuple[str, ...] | None = None,
) -> dict[str, dict[str, str]]:
    """``self``, ``prev`` and ``next`` as absolute URLs; ``next`` only when more rows exist. The
    links page with ``$skip`` (what the official clients have always followed), or ``next`` with a
    ``$continuationToken`` when ``continuation`` (carrying ``after``, the last row's sort key, for a
    keyset list); a request's own paging parameters are replaced."""
    top, skip = paging.top, paging.skip

    def href(skip_value: int, *, token: bool = False) -> str:
        query = {k: v for k, v in params.items() if k not in _PAGING_PARAMS and v != ""}
        query[TOP] = str(top)
        if token:
            query[CONTINUATION] = continuation_token(skip_value, after)
        else:
            query[SKIP] = str(skip_value)
        encoded = urlencode(query, safe="$,:'", quote_via=quote)
        return f"{base}{path}?{encoded}"

    links: dict[str, dict[str, str]] = {"self": {"href": href(skip)}}
    if skip > 0:
        links["prev"] = {"href": href(max(0, skip - max(top, 1)))}
    if has_more and returned > 0:
        links["next"] = {"href": href(skip + returned, token=continuation)}
    return links
