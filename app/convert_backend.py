"""Where `convhub convert`, `jobs result` and `jobs submit --wait` send their calls: a Backend.

- `LocalBackend`: the services on this machine's database (the settings every CLI command uses),
  with operator rights: any job by id or GUID. The only module of the client commands that calls
  `app.services` (and reads stored bytes): a change of the services' names touches this file only.
- `RemoteBackend`: a server's SOAP ContentService as one client application (`app.convert_client`).

Both answer with the same small views (`JobStatus`, `ResultInfo`, `WorkerSpec`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO, Protocol

from app.config import Settings
from app.convert_client import ClientError, ContentServiceClient, JobStatus, Progress, ResultInfo
from app.domain.matching import WorkerSpec

# The client application local conversions are submitted as when no --client is given. Created on
# first use with a random secret that is never shown: local commands act on the database directly and
# need none (the operator can `convhub clients remove` it, or give it a secret by re-adding it).
LOCAL_CLIENT = "convhub-cli"
READ_BYTES = 1 << 20


class Backend(Protocol):
    where: str  # for messages: "the local database ..." or the server's URL

    def targets(self) -> list[WorkerSpec]: ...

    def upload(self, path: Path, progress: Progress | None = None) -> str: ...

    def convert(self, identifier: str, application: str, version: str, fmt: str, page_start: int, page_end: int) -> int: ...

    def status(self, job: str) -> JobStatus: ...

    def fetch_result(self, job: str, sink: IO[bytes], progress: Progress | None = None) -> ResultInfo: ...

    def close(self) -> None: ...


class LocalBackend:
    """The services on the configured database; `client` names the submitting client application
    (None: `LOCAL_CLIENT`, created when missing). `broker`: publish submitted jobs to their queue."""

    def __init__(self, settings: Settings, client: str | None = None, *, broker: bool = True) -> None:
        from app.runtime import build_runtime

        if settings.is_sqlite:
            db_file = Path(settings.database_url.split(":///", 1)[-1])
            if not db_file.is_file():
                raise ClientError(
                    f"no convhub database at {db_file}: start the server first (`make serve` or `convhub serve`), "
                    "or set CONVHUB_DATA_DIR / CONVHUB_DATABASE_URL to the server's"
                )
        self.rt = build_runtime(settings, broker=broker)
        self.client_name = client
        self._client_id: int | None = None
        self.where = f"the local database ({settings.data_dir})" if settings.is_sqlite else "the configured database"

    def close(self) -> None:
        if self.rt.celery is not None:
            self.rt.celery.pool.force_close_all()
        self.rt.close()

    def client_id(self) -> int:
        if self._client_id is None:
            self._client_id = self._find_or_create_client()
        return self._client_id

    def _find_or_create_client(self) -> int:
        from app.domain.credentials import generate_secret
        from app.domain.errors import BadArgument, NotFound
        from app.services import admin

        name = self.client_name or LOCAL_CLIENT
        for _ in range(2):  # a concurrent first use may create it between our look-up and insert
            try:
                with self.rt.db.read_session() as s:
                    row = admin.client_by_name(s, name)
                    if row.disabled:
                        raise ClientError(f"client {name!r} is disabled")
                    return int(row.id)
            except NotFound:
                if self.client_name is not None:
                    raise ClientError(f"no client named {name!r} (add it with `convhub clients add {name}`)") from None
            try:
                with self.rt.db.session() as s:
                    return int(admin.add_client(s, self.rt.now(), name, generate_secret()).id)
            except BadArgument:
                continue
        raise ClientError(f"could not create the local client {name!r}")

    def targets(self) -> list[WorkerSpec]:
        from app.services import admin

        with self.rt.db.read_session() as s:
            return admin.served_targets(s)

    def upload(self, path: Path, progress: Progress | None = None) -> str:
        from app.services import submission

        size = path.stat().st_size

        def parts(fh: IO[bytes]) -> Iterator[bytes]:
            done = 0
            while data := fh.read(READ_BYTES):
                done += len(data)
                yield data
                if progress:
                    progress(done, size)

        client_id = self.client_id()
        with path.open("rb") as fh, self.rt.db.session() as s:
            content = submission.upload(
                s, self.rt.now(), client_id=client_id, filename=path.name, parts=parts(fh),
                max_bytes=self.rt.settings.max_document_bytes,
            )
            return content.identifier

    def convert(self, identifier: str, application: str, version: str, fmt: str, page_start: int, page_end: int) -> int:
        from app.services import submission

        client_id = self.client_id()
        with self.rt.db.session() as s:
            content = submission.find_content(s, client_id, identifier)
            job = submission.submit(
                s, self.rt.now(), self.rt.mirror, client_id=client_id, content=content, application=application,
                version=version, fmt=fmt, page_start=page_start, page_end=page_end,
                max_attempts=self.rt.settings.max_attempts, notifier=self.rt.notifier,
                share_across_clients=self.rt.settings.share_results_across_clients,
                default_max_queued=self.rt.settings.client_max_queued,
            )
            return int(job.id)

    def status(self, job: str) -> JobStatus:
        from app.services import admin

        with self.rt.db.read_session() as s:
            info = admin.show_job(s, job)
        return JobStatus(
            job_id=int(info["jobId"]),  # type: ignore[call-overload]
            guid=str(info["guid"]),
            state=int(info["jobStatus"]),  # type: ignore[call-overload]
            attempts=int(info["attempts"]),  # type: ignore[call-overload]
            application=str(info["application"]),
            version=str(info["version"]),
            format=str(info["format"] or ""),
            failure_reason=str(info["failureReason"]) if info["failureReason"] else None,
        )

    def fetch_result(self, job: str, sink: IO[bytes], progress: Progress | None = None) -> ResultInfo:
        from app.services import admin, client_views, documents

        with self.rt.db.read_session() as s:
            info = admin.show_job(s, job)
            owner = admin.client_by_name(s, str(info["client"]))
            result = client_views.result_of(s, owner.id, int(info["jobId"]))  # type: ignore[call-overload]
        done = 0
        for chunk in documents.stream_checked(self.rt.db, result.blob_id, result.size):
            sink.write(chunk)
            done += len(chunk)
            if progress:
                progress(done, result.size)
        return ResultInfo(result.format, result.filename, done)


class RemoteBackend:
    """A convhub (or compatible ContentService) server over SOAP, as one client application."""

    def __init__(self, server: str, client: str, secret: str) -> None:
        self.soap = ContentServiceClient(server, client, secret)
        self.where = self.soap.endpoint

    def close(self) -> None:
        pass

    def targets(self) -> list[WorkerSpec]:
        return self.soap.targets()

    def upload(self, path: Path, progress: Progress | None = None) -> str:
        return self.soap.upload(path, path.name, progress)

    def convert(self, identifier: str, application: str, version: str, fmt: str, page_start: int, page_end: int) -> int:
        return self.soap.convert(identifier, application, version, fmt, page_start, page_end)

    def status(self, job: str) -> JobStatus:
        return self.soap.status(_job_id(job))

    def fetch_result(self, job: str, sink: IO[bytes], progress: Progress | None = None) -> ResultInfo:
        return self.soap.result(_job_id(job), sink, progress)


def _job_id(job: str) -> int:
    if not job.strip().isdigit():
        raise ClientError(f"over SOAP a job is named by its jobId (a number), not {job!r}")
    return int(job)
