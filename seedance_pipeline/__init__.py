"""seedance_pipeline: image catalog → Seedance image-to-video providers → Parquet ledger."""

__version__ = "0.1.0"
