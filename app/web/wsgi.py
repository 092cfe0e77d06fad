"""WSGI entry for gunicorn: `gunicorn 'app.web.wsgi:make_app()'` (settings from the environment)."""

from __future__ import annotations


def make_app():  # type: ignore[no-untyped-def]
    from app.config import load_settings
    from app.logs import configure_logging
    from app.runtime import build_runtime
    from app.web import create_app

    settings = load_settings()
    configure_logging(settings)
    return create_app(build_runtime(settings))
