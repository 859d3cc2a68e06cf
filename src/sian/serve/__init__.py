"""``sian serve``: a local web page and an HTTP API for deraining (FastAPI + uvicorn, plain HTML/JS)."""

from .app import ServeConfig, check_exposure, create_app, is_loopback, run_server

__all__ = ["ServeConfig", "check_exposure", "create_app", "is_loopback", "run_server"]
