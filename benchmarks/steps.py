"""The pipeline steps the cases time and the state names they check, imported in one place so that
when these move in the package only this module changes."""

from seedance_pipeline.pipeline import poll_tick, refresh_catalog, submit_batch, write_batch_ledger
from seedance_pipeline.state.store import PENDING, SUCCEEDED, RequestRecord

__all__ = [
    "PENDING",
    "SUCCEEDED",
    "RequestRecord",
    "poll_tick",
    "refresh_catalog",
    "submit_batch",
    "write_batch_ledger",
]
