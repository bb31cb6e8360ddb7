"""JSON encoding for payloads and fingerprints.

Records arrive with ``Decimal``, ``date`` and ``datetime`` values that the
standard ``json`` module cannot encode. msgspec writes decimals as exact JSON
numbers, and with sorted keys it also gives the canonical form that change
detection hashes. A payload is encoded once: its fingerprint is the hash of
those bytes, and request bodies are assembled from them.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import typing as t

import msgspec


def _encode_extra(value: t.Any) -> t.Any:
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    msg = f"cannot encode {type(value).__name__} as JSON"
    raise TypeError(msg)


_ENCODER = msgspec.json.Encoder(enc_hook=_encode_extra, decimal_format="number")
_CANONICAL_ENCODER = msgspec.json.Encoder(
    enc_hook=_encode_extra, decimal_format="number", order="sorted"
)


_DECODER = msgspec.json.Decoder(float_hook=decimal.Decimal)


def decode_json(encoded: bytes) -> t.Any:
    """Decode JSON, reading non-integral numbers as exact decimals."""
    return _DECODER.decode(encoded)


def dumps(value: t.Any) -> bytes:
    """Encode a request body; decimals stay exact numbers."""
    return _ENCODER.encode(value)


def canonical_json(value: t.Any) -> bytes:
    """Encode with sorted keys so equal payloads give equal bytes."""
    return _CANONICAL_ENCODER.encode(value)


#: Copied for each hash: a third cheaper than building a hasher with options.
_BLAKE2B_16 = hashlib.blake2b(digest_size=16)


def hex_digest(data: bytes) -> str:
    """The 16-byte BLAKE2b digest, in hex, that every ledger id and hash is."""
    hasher = _BLAKE2B_16.copy()
    hasher.update(data)
    return hasher.hexdigest()


def fingerprint_of(encoded: bytes) -> str:
    """The hash of an encoded payload, as stored in the ledger."""
    return hex_digest(encoded)


def fingerprint(payload: t.Any) -> str:
    """A stable hash of a mapped payload."""
    return fingerprint_of(canonical_json(payload))


def key_hash(key: str) -> str:
    """The ledger stores this instead of the key itself (minimal personal data)."""
    return hex_digest(key.encode())


#: Bytes of a source fingerprint: a 2-byte identity tag, then an 8-byte hash.
SOURCE_FINGERPRINT_BYTES = 10
_TAG_BYTES = 2


class SourceFingerprints:
    """Hashes of source records, so an unchanged record skips mapping.

    A record that is byte for byte the one delivered last time, read under
    the same identity (the sink gives it: versions, schema, key and the
    settings that may change a payload), maps to the same payload: the
    ledger can tell it is unchanged before it is validated, mapped and
    encoded. The identity leads what is hashed, so no fingerprint matches
    across a change of it.

    A fingerprint is ``tag + hash``: ``tag`` (4 hex digits of the identity)
    says under which identity it was made, so a stored one that no longer
    matches can be told apart as *stale* (worth renewing once) from a record
    that changed (a column that changes on every extraction would otherwise
    be renewed on every run).
    """

    def __init__(self, identity: bytes) -> None:
        digest = hashlib.blake2b(identity, digest_size=16).digest()
        self.tag = digest[:_TAG_BYTES].hex()
        # the identity's digest leads every hashed record: as BLAKE2b's key
        # it would cost a compression of its own per record
        self._hasher = hashlib.blake2b(
            digest, digest_size=SOURCE_FINGERPRINT_BYTES - _TAG_BYTES
        )

    def of(self, record: t.Mapping[str, t.Any]) -> str | None:
        """The record's fingerprint; None for a value JSON cannot hold."""
        try:
            encoded = _ENCODER.encode(record)
        except (TypeError, ValueError, msgspec.MsgspecError):
            return None
        hasher = self._hasher.copy()
        hasher.update(encoded)
        return self.tag + hasher.hexdigest()

    def is_stale(self, stored: str | None) -> bool:
        """Whether a stored fingerprint predates this identity (or is missing)."""
        return stored is None or not stored.startswith(self.tag)


def join_json(parts: t.Iterable[bytes]) -> bytes:
    """A JSON array of already-encoded values."""
    return b"[" + b",".join(parts) + b"]"
