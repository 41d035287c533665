"""ASGI entry point for uvicorn (``twinbase.asgi:app`` with ``--factory``)."""

from fastapi import FastAPI

from twinbase.app import create_app
from twinbase.settings import load_settings


def app() -> FastAPI:
    return create_app(load_settings())
