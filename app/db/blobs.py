"""Blob storage in 1 MiB chunks: writing from an iterable, reading as a stream."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator
from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from .models import Blob, BlobChunk

CHUNK = 1024 * 1024


class BlobGone(Exception):
    """The blob was purged (its job deleted) while it was being read."""


def _rechunk(parts: Iterable[bytes]) -> Iterator[bytes]:
    buf = bytearray()
    for part in parts:
        buf += part
        while len(buf) >= CHUNK:
            yield bytes(buf[:CHUNK])
            del buf[:CHUNK]
    if buf:
        yield bytes(buf)


def store_blob(session: Session, parts: Iterable[bytes] | bytes, now: datetime) -> Blob:
    """Store the bytes in 1 MiB chunks; size and SHA-256 are computed on the way.

    Round trips: a document of one chunk (in hand once the second read comes back empty) is 2, the
    blob row already with its size and hash, then the chunk; a larger one is n + 2 (the blob row,
    the n chunks as they stream, then its size and hash)."""
    if isinstance(parts, bytes | bytearray | memoryview):
        data = bytes(parts)
        parts = (data[i : i + CHUNK] for i in range(0, len(data), CHUNK))
    chunks = _rechunk(parts)
    first = next(chunks, b"")
    second = next(chunks, None)
    if second is None:
        blob = Blob(size=len(first), sha256=hashlib.sha256(first).hexdigest(), created_at=now)
        session.add(blob)
        session.flush()
        if first:
            session.execute(insert(BlobChunk).values(blob_id=blob.id, seq=0, data=first))
        return blob
    blob = Blob(size=0, sha256="", created_at=now)
    session.add(blob)
    session.flush()
    digest = hashlib.sha256()
    size = 0
    for seq, chunk in enumerate(itertools.chain((first, second), chunks)):
        digest.update(chunk)
        size += len(chunk)
        # Core insert, not an ORM object: the session must not keep every chunk alive until commit.
        session.execute(insert(BlobChunk).values(blob_id=blob.id, seq=seq, data=chunk))
    blob.size = size
    blob.sha256 = digest.hexdigest()
    return blob


def chunk_seqs(session: Session, blob_id: int) -> list[int]:
    return list(session.scalars(select(BlobChunk.seq).where(BlobChunk.blob_id == blob_id).order_by(BlobChunk.seq)).all())


def read_chunk(session: Session, blob_id: int, seq: int) -> bytes | None:
    data = session.scalar(select(BlobChunk.data).where(BlobChunk.blob_id == blob_id, BlobChunk.seq == seq))
    return None if data is None else bytes(data)


def iter_blob(session: Session, blob_id: int) -> Iterator[bytes]:
    """Yield the chunks in order, one query per chunk so only one chunk is held at a time."""
    for seq in chunk_seqs(session, blob_id):
        data = read_chunk(session, blob_id, seq)
        if data is None:  # purged while being read: never hand out a document with a hole in it
            raise BlobGone(f"blob {blob_id} lost chunk {seq} while being read")
        yield data


def read_blob(session: Session, blob_id: int) -> bytes:
    return b"".join(iter_blob(session, blob_id))


def delete_blobs(session: Session, blob_ids: list[int]) -> None:
    if not blob_ids:
        return
    session.execute(delete(BlobChunk).where(BlobChunk.blob_id.in_(blob_ids)))
    session.execute(delete(Blob).where(Blob.id.in_(blob_ids)))
