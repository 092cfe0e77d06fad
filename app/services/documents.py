"""Stored documents (uploads and results): storing with the size rules, and streaming them back.

Adapters read a document through `stream` / `stream_checked` / `read`, never through the database:
each chunk is read in its own short read transaction, so a slow client holds no connection.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime

from sqlalchemy.orm import Session

from app.db.blobs import BlobGone, chunk_seqs, iter_blob, read_blob, read_chunk, store_blob
from app.db.engine import Database
from app.db.models import Blob
from app.domain.errors import BadArgument, TooLarge

__all__ = ["BlobGone", "read", "store_checked", "stream", "stream_checked"]

log = logging.getLogger("convhub.documents")


def check_size(size: int, max_bytes: int, what: str = "document") -> None:
    """TooLarge when `size` is over the limit (before anything is stored)."""
    if size > max_bytes:
        raise TooLarge(f"{what} is {size} bytes; the limit is {max_bytes}")


def store_checked(session: Session, parts: Iterable[bytes] | bytes, now: datetime, max_bytes: int, what: str) -> Blob:
    """Store the bytes; TooLarge or empty raise (the caller's transaction then stores nothing)."""
    blob = store_blob(session, parts, now)
    check_size(blob.size, max_bytes, what)
    if blob.size == 0:
        raise BadArgument("document is empty" if what == "document" else f"{what} document is empty")
    return blob


def stream(db: Database, blob_id: int) -> Iterator[bytes]:
    """Chunks of a stored document, read in one read transaction (BlobGone if purged meanwhile)."""
    with db.read_session() as s:
        yield from iter_blob(s, blob_id)


def stream_checked(db: Database, blob_id: int, size: int) -> Iterator[bytes]:
    """The document's chunks, each read in its own short session (a slow client holds no connection).

    A document purged meanwhile (its job deleted) raises BlobGone once the chunks run out: the
    server then drops the connection short of its Content-Length, so the client sees a failed
    transfer, never a document with a hole."""
    with db.read_session() as s:
        seqs = chunk_seqs(s, blob_id)
    sent = 0
    for seq in seqs:
        with db.read_session() as s:
            data = read_chunk(s, blob_id, seq)
        if data is None:
            break
        sent += len(data)
        yield data
    if sent != size:
        log.warning("result blob %s was purged while being streamed; response cut short", blob_id)
        raise BlobGone(f"blob {blob_id}: {sent} of {size} bytes left to stream")


def read(session: Session, blob_id: int) -> bytes:
    """A whole document in memory (small results answered by spyne)."""
    return read_blob(session, blob_id)
