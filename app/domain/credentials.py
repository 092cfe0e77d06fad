"""Secrets: generation, slow hashing (scrypt, stdlib) and constant-time verification."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

# scrypt n=2**14, r=8, p=1: ~16 MiB and ~40-60 ms per hash on this class of machine.
_N, _R, _P = 2**14, 8, 1
SHORT_SECRET = 12


def generate_secret() -> str:
    """160 random bits, URL-safe."""
    return secrets.token_urlsafe(20)


def hash_secret(secret: str, *, n: int = _N) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=n, r=_R, p=_P, dklen=32, maxmem=64 * 1024 * 1024)
    return f"scrypt${n}${_R}${_P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_secret(secret: str, stored: str) -> bool:
    """Constant-time comparison of the derived key with the stored one.

    scrypt keys its PBKDF2-HMAC with the secret, and HMAC pads a short key with NUL bytes, so
    "s" and "s\\x00" derive the same key: a secret containing NUL never verifies (none is issued)."""
    nul = "\x00" in secret
    try:
        algo, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if algo != "scrypt":
            return False
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(digest_b64)
        got = hashlib.scrypt(
            secret.encode(), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected), maxmem=64 * 1024 * 1024
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected) and not nul  # the full cost is paid either way


@functools.cache
def dummy_hash() -> str:
    """Verified against when a name is unknown, so an unknown name costs the same as a wrong secret."""
    return hash_secret(secrets.token_hex(16))
