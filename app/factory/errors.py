"""Exceptions of the reference factory. Everything raised on purpose derives from FactoryError."""


class FactoryError(Exception):
    """Base class of the factory's own errors; ``str(exc)`` is one readable line."""


class ConfigError(FactoryError):
    """The factory's configuration (INI file, flags, environment) is unusable."""


class ConversionError(FactoryError):
    """A document could not be converted; ``reason`` is the one-line text sent with ``jobs.fail``.

    ``permanent``: the document itself cannot be converted (it does not load, or is of a kind no
    renderer takes): reported with ``jobs.fail ... permanent = true``, so the job fails at once."""

    permanent = False

    def __init__(self, reason: str, *, permanent: bool | None = None):
        reason = " ".join(str(reason).split()) or "conversion failed"
        super().__init__(reason)
        self.reason = reason
        if permanent is not None:
            self.permanent = permanent


class DocumentRejected(ConversionError):
    """The document cannot be converted by any attempt: it does not load, or its kind is unsupported."""

    permanent = True


class ConversionTimeout(ConversionError):
    """The conversion ran past its time limit; the renderer was killed (and restarts)."""


class ConversionCancelled(ConversionError):
    """The conversion was abandoned on request (lease lost, job cancelled, shutdown)."""


class FatalServerError(FactoryError):
    """The server refused the factory itself (bad credentials, unknown factory): stop polling."""
