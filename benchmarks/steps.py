"""The pipeline steps the cases time and the state names they check, imported in one place so that
when these move in the package only this module changes."""

from seedance_pipeline.catalog.refresh import refresh_catalog
from seedance_pipeline.ledger.write import write_batch_ledger
from seedance_pipeline.polling.tick import poll_tick
from seedance_pipeline.state.claims import SpendCap
from seedance_pipeline.state.lifecycle import Move as TaskMove
from seedance_pipeline.state.lifecycle import RequestStatus
from seedance_pipeline.state.schema import requests_table
from seedance_pipeline.state.store import RequestRecord, StateStore
from seedance_pipeline.submission.batch import submit_batch

PENDING, SUCCEEDED, FAILED = RequestStatus.PENDING, RequestStatus.SUCCEEDED, RequestStatus.FAILED

__all__ = [
    "FAILED",
    "PENDING",
    "SUCCEEDED",
    "RequestRecord",
    "SpendCap",
    "StateStore",
    "TaskMove",
    "poll_tick",
    "refresh_catalog",
    "requests_table",
    "submit_batch",
    "write_batch_ledger",
]
