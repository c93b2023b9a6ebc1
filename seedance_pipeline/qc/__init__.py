"""Video QC: every kept video measured once, on the durable copy, with PyAV and numpy (no model
weights, no network): conformance to the request, black and frozen frames, fidelity to the input
images, and a verdict (`qc_status`, `qc_reasons`) that never changes the request's status."""

from seedance_pipeline.qc.thresholds import QcThresholds
from seedance_pipeline.qc.verdict import (
    FAIL,
    PASS,
    QC_COLUMNS,
    WARN,
    QcResult,
    check_video,
    checked_columns,
)

__all__ = [
    "FAIL",
    "PASS",
    "QC_COLUMNS",
    "WARN",
    "QcResult",
    "QcThresholds",
    "check_video",
    "checked_columns",
]
