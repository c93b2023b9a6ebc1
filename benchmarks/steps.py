"""The pipeline steps the cases time and the state names they check, imported in one place so that
when these move in the package only this module changes."""

from seedance_pipeline.catalog.refresh import refresh_catalog
from seedance_pipeline.ledger.write import write_batch_ledger
from seedance_pipeline.polling.tick import poll_tick
from seedance_pipeline.state.store import PENDING, SUCCEEDED, RequestRecord
from seedance_pipeline.submission.batch import submit_batch

__all__ = [
    "PENDING",
    "SUCCEEDED",
    "RequestRecord",
    "poll_tick",
    "refresh_catalog",
    "submit_batch",
    "write_batch_ledger",
]
