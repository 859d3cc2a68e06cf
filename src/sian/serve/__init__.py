"""``sian serve``: a local web page and an HTTP API for deraining (FastAPI + uvicorn, plain HTML/JS)."""

from .app import ServeConfig, create_app, is_loopback

__all__ = ["ServeConfig", "create_app", "is_loopback"]
