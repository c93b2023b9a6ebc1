"""A batch's ledger partition, written from the state store and read back as readers see it."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pandas as pd

from seedance_pipeline.ledger.rows import partition_path, read_partition, write_store_ledger
from seedance_pipeline.providers.facts import load_facts
from seedance_pipeline.settings import PipelineSettings
from seedance_pipeline.storage import STORAGE_SECRET_ENV


@dataclass(frozen=True)
class BatchLedger:
    path: str  # the partition file: an absolute path or an fsspec URL
    request_ids: set[str]  # what the store holds for the batch, to check the ledger against
    cost_usd: float


def write_batch_ledger(settings: PipelineSettings, batch: str) -> BatchLedger:
    """The batch's ledger partition written from the store, with the store's own totals to check it
    against, read meanwhile by queries of their own in a thread (on SQLite both reads spend most
    of their time outside the GIL, in the driver's child processes and in Arrow)."""
    store = settings.store()
    with ThreadPoolExecutor(max_workers=1) as pool:
        totals = pool.submit(store.batch_totals, batch)
        path = write_store_ledger(store, settings.ledger, batch)
        request_ids, cost = totals.result()
    return BatchLedger(path, request_ids, cost)


def read_batch_ledger(settings: PipelineSettings, batch: str) -> pd.DataFrame:
    """A batch's ledger partition as readers see it (read back from storage)."""
    return read_partition(partition_path(settings.ledger, batch)).to_pandas()


def secret_values() -> list[str]:
    """Provider API keys, and the object store's secrets (the ledger may live there): what the
    `no_secrets` check looks for."""
    names = [f"{spec.env_prefix}_API_KEY" for spec in load_facts().providers.values()]
    keys = (os.environ.get(name) for name in [*names, *STORAGE_SECRET_ENV])
    return [k for k in keys if k]
