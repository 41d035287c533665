"""Route registration helpers shared by the API modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from twinbase.api.http import body_limit

MAX_JSON_BODY = 1024 * 1024
read_json_body = body_limit(MAX_JSON_BODY)


def both(router: APIRouter, path: str, methods: list[str], **kwargs: Any) -> Callable[[Any], Any]:
    """Register ``path`` with and without a trailing slash: the clients use both spellings."""

    def decorate(fn: Any) -> Any:
        router.add_api_route(path, fn, methods=methods, **kwargs)
        alt = path[:-1] if path.endswith("/") else path + "/"
        router.add_api_route(alt, fn, methods=methods, include_in_schema=False, **kwargs)
        return fn

    return decorate


def query_params(request: Request) -> dict[str, str]:
    """Query parameters, last value wins; empty names (``?&$top=1``, the 1.x client) are dropped."""
    return {k: v for k, v in request.query_params.items() if k}


async def body(request: Request) -> bytes:
    return await read_json_body(request)


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await run_in_threadpool(fn, *args)


Body = Annotated[bytes, Depends(body)]
