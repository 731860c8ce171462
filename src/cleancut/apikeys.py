"""API keys: parse, hash, and check in constant time. Only SHA-256 digests are ever kept.

A key entry is one of

    KEY                      a key; its id is ``key-`` + the first 8 hex digits of its SHA-256
    ID:KEY                   a key with an id (the id is what logs show)
    ID:sha256:HEX            the key's SHA-256 in hex, so the plain key need not be stored at all

``CLEANCUT_API_KEYS`` holds entries separated by commas; ``CLEANCUT_API_KEYS_FILE`` one per line
(blank lines and lines starting with ``#`` are skipped). Keys are at least 16 characters long.
Make a key and its hashed line with::

    python -c "import secrets; print(secrets.token_urlsafe(32))"
    printf %s "$KEY" | sha256sum
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InvalidParameter

__all__ = ["ApiKey", "KeyTable", "parse_entries", "MIN_KEY_LENGTH"]

MIN_KEY_LENGTH = 16
_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_HEX = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class ApiKey:
    """One accepted key: its id and the SHA-256 of its UTF-8 bytes (masked in ``repr``)."""

    id: str
    digest: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"ApiKey(id={self.id!r}, digest='**********')"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _parse_one(entry: str, where: str) -> ApiKey:
    key_id, sep, rest = entry.partition(":")
    if not sep:  # a bare key
        key_id, rest = "", entry
    elif not _ID.fullmatch(key_id):
        raise ValueError(f"{where}: the key id must be 1-64 of A-Z a-z 0-9 . _ -")
    kind, sep, hexdigest = rest.partition(":")
    if sep and kind == "sha256":
        if not _HEX.fullmatch(hexdigest):
            raise ValueError(f"{where}: sha256: must be followed by 64 hex digits")
        return ApiKey(key_id, bytes.fromhex(hexdigest))
    if len(rest) < MIN_KEY_LENGTH:
        raise ValueError(f"{where}: a key must be at least {MIN_KEY_LENGTH} characters long "
                         "(make one with: python -c \"import secrets; "
                         "print(secrets.token_urlsafe(32))\")")
    digest = _digest(rest)
    return ApiKey(key_id or f"key-{digest.hex()[:8]}", digest)


def parse_entries(entries: Iterable[str], source: str) -> tuple[ApiKey, ...]:
    """Parse key entries (see the module docstring); ``source`` names them in error messages,
    which never quote a key."""
    keys: list[ApiKey] = []
    for number, raw in enumerate(entries, start=1):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        keys.append(_parse_one(entry, f"{source} entry {number}"))
    ids = [k.id for k in keys]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"{source}: key ids appear more than once: {', '.join(duplicates)}")
    return tuple(keys)


class KeyTable:
    """The accepted keys. ``check(key)`` returns the key's id, or ``None``, in time that does not
    depend on which stored key (if any) matches."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._keys = tuple(keys)

    @classmethod
    def load(cls, env_keys: Iterable[ApiKey], file: Path | None) -> KeyTable:
        """``env_keys`` (already parsed) plus the entries of ``file``; raises
        :class:`~cleancut.errors.InvalidParameter` naming CLEANCUT_API_KEYS_FILE."""
        keys = list(env_keys)
        if file is not None:
            try:
                lines = file.read_text(encoding="utf-8").splitlines()
                keys.extend(parse_entries(lines, "CLEANCUT_API_KEYS_FILE"))
            except OSError as exc:
                raise InvalidParameter(
                    "api_keys_file", f"CLEANCUT_API_KEYS_FILE: cannot read {file}: "
                    f"{exc.strerror or exc}") from exc
            except (ValueError, UnicodeDecodeError) as exc:
                raise InvalidParameter("api_keys_file", f"invalid setting: {exc}") from exc
        ids = [k.id for k in keys]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise InvalidParameter(
                "api_keys_file", "invalid setting: key ids appear in both CLEANCUT_API_KEYS and "
                f"CLEANCUT_API_KEYS_FILE: {', '.join(duplicates)}")
        return cls(keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeyTable(ids={[k.id for k in self._keys]!r})"

    def check(self, key: str) -> str | None:
        digest = _digest(key)
        found: str | None = None
        for entry in self._keys:  # no early exit: every entry is compared
            if hmac.compare_digest(digest, entry.digest):
                found = entry.id
        return found
