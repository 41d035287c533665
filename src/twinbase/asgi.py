"""ASGI entry point for uvicorn (``twinbase.asgi:app`` with ``--factory``)."""

import os

from fastapi import FastAPI

from twinbase.app import create_app
from twinbase.settings import load_settings

# Set by ``twinbase serve`` after it applied the migrations itself.
MIGRATED_MARK = "_TWINBASE_MIGRATED"


def app() -> FastAPI:
    return create_app(load_settings(), migrate=os.environ.get(MIGRATED_MARK) != "1")
