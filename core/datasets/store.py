"""Dataset records in Redis: ``<prefix>:dataset:<id>`` hashes, a ``<prefix>:datasets`` index of
all datasets (for maintenance) and a ``<prefix>:tenant:<t>:datasets`` index per tenant."""

from __future__ import annotations

from typing import cast

from core.records import DatasetRecord, decode, is_record_id, page_ids
from core.redis import add_indexed, get_redis, key, remove_indexed, tenant_index, zset_members


def _key(dataset_id: str) -> str:
    return key("dataset", dataset_id)


def create(record: DatasetRecord) -> None:
    with get_redis().pipeline() as p:
        add_indexed(p, "dataset", "datasets", record)
        p.execute()


def get(dataset_id: str) -> DatasetRecord | None:
    if not is_record_id(dataset_id):
        return None
    raw = get_redis().hgetall(_key(dataset_id))
    return cast(DatasetRecord, decode(raw)) if raw else None


def list_ids(tenant: str, limit: int, after: str | None) -> list[str]:
    return page_ids(get_redis(), tenant_index(tenant, "datasets"), limit, after)


def delete(record: DatasetRecord) -> None:
    with get_redis().pipeline() as p:
        remove_indexed(p, "dataset", "datasets", record)
        p.execute()


def all_ids() -> list[str]:
    """Every dataset of every tenant (maintenance: the sweeper)."""
    return zset_members(key("datasets"))
