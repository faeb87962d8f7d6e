"""API keys in Redis, stored only as SHA-256 digests.

Keys are 256-bit random strings (``secrets.token_urlsafe``), so a plain SHA-256 is enough:
there is nothing to brute-force a digest back into (slow password hashes exist for
low-entropy secrets). ``<prefix>:apikey:<sha256>`` holds the key's record (id, tenant,
name, created_at); ``<prefix>:apikeys`` maps key id -> digest for listing and revoking.
The secret itself is shown once, when the key is created, and never stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from core.records import decode, encode, now_iso, text, texts
from core.redis import get_redis, key

TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
SECRET_PREFIX = "pk_"


class KeyError_(ValueError):
    """A key operation the caller asked for cannot be done (bad tenant, unknown id)."""


@dataclass(frozen=True)
class ApiKey:
    id: str
    tenant: str
    name: str
    created_at: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "name": self.name,
            "created_at": self.created_at,
        }


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _record_key(hexdigest: str) -> str:
    return key("apikey", hexdigest)


def _index_key() -> str:
    return key("apikeys")


def validate_tenant(tenant: str) -> str:
    if not TENANT_PATTERN.fullmatch(tenant):
        raise KeyError_(
            f"tenant {tenant!r} is not valid: use 1-63 characters of a-z, 0-9, '-' and '_', "
            "starting with a letter or digit"
        )
    return tenant


def create_key(tenant: str, name: str = "") -> tuple[ApiKey, str]:
    """A new key for ``tenant``: its record and the secret (shown once, never stored)."""
    validate_tenant(tenant)
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey(id=secrets.token_hex(6), tenant=tenant, name=name, created_at=now_iso())
    hexdigest = digest(secret)
    r = get_redis()
    with r.pipeline() as p:
        p.hset(_record_key(hexdigest), mapping=encode(api_key.as_dict()))
        p.hset(_index_key(), api_key.id, hexdigest)
        p.execute()
    return api_key, secret


def lookup(secret: str) -> ApiKey | None:
    """The key a presented secret belongs to, or None (unknown or revoked)."""
    if not secret.startswith(SECRET_PREFIX) or len(secret) > 200:
        return None
    raw = get_redis().hgetall(_record_key(digest(secret)))
    if not raw:
        return None
    return ApiKey(**decode(raw))


def list_keys(tenant: str | None = None) -> list[ApiKey]:
    r = get_redis()
    out = []
    for hexdigest in texts(r.hvals(_index_key())):
        raw = r.hgetall(_record_key(hexdigest))
        if raw:
            k = ApiKey(**decode(raw))
            if tenant is None or k.tenant == tenant:
                out.append(k)
    return sorted(out, key=lambda k: (k.tenant, k.created_at))


def revoke(key_id: str) -> ApiKey:
    r = get_redis()
    found = r.hget(_index_key(), key_id)
    if found is None:
        raise KeyError_(f"no API key with id {key_id!r}")
    hexdigest = text(found)
    raw = r.hgetall(_record_key(hexdigest))
    with r.pipeline() as p:
        p.delete(_record_key(hexdigest))
        p.hdel(_index_key(), key_id)
        p.execute()
    return ApiKey(**decode(raw)) if raw else ApiKey(key_id, "?", "", "")
