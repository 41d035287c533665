"""Route registration helpers shared by the API modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.routing import Match
from starlette.types import Scope

from twinbase.api.http import api_invalid_code, body_limit
from twinbase.errors import InvalidRequest, invalid_value

MAX_JSON_BODY = 1024 * 1024
read_json_body = body_limit(MAX_JSON_BODY)


class ITwinIdConvertor(Convertor[str]):
    """``{name:itwinid}``: one path segment that is not a literal of the iTwins API.

    With it ``/itwins/{id}`` cannot swallow ``/itwins/exports`` and friends, so the hot iTwin routes
    can come first in the route list whatever order the modules are included in.
    """

    regex = "(?!(?:exports|repositories|favorites|recents|myprimaryaccount|myitwins)(?:/|$))[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("itwinid", ITwinIdConvertor())


class FastRoute(APIRoute):
    """An ``APIRoute`` that rejects a non-matching path with one regex test.

    Starlette tries routes in order; FastAPI's own ``matches`` costs several microseconds even for a
    route whose path cannot match, and a request walks dozens of those before its own. twinbase
    serves from the root (no ``root_path``), so the raw path is the route path.
    """

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and self.path_regex.match(scope["path"]) is None:
            return Match.NONE, {}
        return super().matches(scope)


def both(router: APIRouter, path: str, methods: list[str], **kwargs: Any) -> Callable[[Any], Any]:
    """Register ``path`` for both spellings the clients use, with and without a trailing slash.

    ``EdgeMiddleware`` strips a trailing slash from every request path, so one route (the
    spelling without the slash) serves both; half the routes means half the matching per request.
    """
    canonical = path.rstrip("/") or "/"

    def decorate(fn: Any) -> Any:
        router.add_api_route(canonical, fn, methods=methods, route_class_override=FastRoute, **kwargs)
        return fn

    return decorate


def query_params(request: Request) -> dict[str, str]:
    """Query parameters, last value wins; empty names (``?&$top=1``, the 1.x client) are dropped.

    A NUL character is refused here, once for every list: PostgreSQL cannot compare text with one
    and SQLite can, so letting it through would make the two backends answer differently.
    """
    params = {k: v for k, v in request.query_params.items() if k}
    for name, value in params.items():
        if "\x00" in value or "\x00" in name:
            code, message = api_invalid_code(request.url.path)
            raise InvalidRequest(message, code=code, details=[invalid_value(name.replace("\x00", ""))])
    return params


async def body(request: Request) -> bytes:
    return await read_json_body(request)


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await run_in_threadpool(fn, *args)


Body = Annotated[bytes, Depends(body)]
