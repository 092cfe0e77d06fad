"""Logging set-up: level and format (text or JSON lines) from Settings."""

from __future__ import annotations

import json
import logging
import sys

from app.config import Settings

_STD = set(vars(logging.makeLogRecord({})))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _STD and not k.startswith("_")})
        return json.dumps(out, default=str)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    from app.db.engine import OutageLogFilter  # an outage logs one line per failure, no traceback

    handler.addFilter(OutageLogFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)


class BeatOutageFilter(logging.Filter):
    """celery beat logs each schedule entry it could not send ("Message Error") with a dump of its
    own stack and a traceback, every tick while the broker is away. When the cause is an outage
    (the broker or the database unreachable), one line says which entry and why."""

    def filter(self, record: logging.LogRecord) -> bool:
        from app.db.engine import is_outage

        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and is_outage(exc):
            record.msg, record.args = "%s (broker unavailable; sent again at its next time)", (str(exc),)
            record.exc_info = None
            record.exc_text = None
        return True
