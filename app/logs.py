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


class CeleryOutageFilter(logging.Filter):
    """Celery logs its own outage errors with a traceback, every time: beat each schedule entry it
    could not send ("Message Error", with a dump of its own stack), the worker's consumer each burst
    of broker reconnections ("Frequent restarts detected"). When the cause is an outage (the broker
    or the database unreachable, a full disk under the embedded broker), one line says what and why;
    the error's SQL and parameters stay out of it."""

    def filter(self, record: logging.LogRecord) -> bool:
        from app.db.engine import describe_error, is_outage

        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        if isinstance(record.msg, str) and record.msg.startswith(("Couldn't ack", "Couldn't reject")):
            # kombu: a task finished after its broker connection was lost (a broker restart). The
            # message was not settled; the broker delivers it again (acks_late), and every convhub
            # task is safe to run twice.
            verb = "acknowledge" if record.msg.startswith("Couldn't ack") else "reject"
            record.msg = "could not %s task message %r: %s (broker connection lost; the broker delivers it again)"
            record.args = (verb, record.args[0] if isinstance(record.args, tuple) and record.args else "?", describe_error(exc))
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        elif exc.__class__.__name__ == "RestartFreqExceeded":  # billiard's: the reconnection loop's back-off
            record.exc_info, record.exc_text = None, None
        elif is_outage(exc):
            cause = exc.__cause__ or exc.__context__ or exc
            head = str(exc).split(": ", 1)[0] if cause is not exc else exc.__class__.__name__
            record.msg, record.args = "%s: %s (broker unavailable; sent again at its next time)", (head, describe_error(cause))
            record.exc_info, record.exc_text = None, None
        return True


def quiet_celery_outages() -> None:
    """Install CeleryOutageFilter on the loggers of beat, of the worker's consumer and of its task
    requests (which acknowledge messages)."""
    for name in ("celery.beat", "celery.worker.consumer.consumer", "celery.worker.request"):
        logging.getLogger(name).addFilter(CeleryOutageFilter())
