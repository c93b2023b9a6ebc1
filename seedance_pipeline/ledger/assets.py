"""The ledger partition of a batch, and the checks that guard it."""

import os
import re
from collections import Counter

import dagster as dg
import pyarrow.parquet as pq

from seedance_pipeline.catalog.assets import batches
from seedance_pipeline.ledger.rows import COLUMNS
from seedance_pipeline.pipeline import write_batch_ledger
from seedance_pipeline.polling.videos import file_sha256
from seedance_pipeline.providers.facts import load_facts
from seedance_pipeline.resources import SeedanceResource
from seedance_pipeline.submission.assets import submission_assets

CHECKS = [
    dg.AssetCheckSpec("one_row_per_request", asset="batch_ledger",
                      description="Every request of the batch appears exactly once."),
    dg.AssetCheckSpec("succeeded_rows_have_verified_videos", asset="batch_ledger",
                      description="Every succeeded row has a durable copy whose sha256 matches the ledger."),
    dg.AssetCheckSpec("costs_add_up", asset="batch_ledger",
                      description="Costs are non-negative and add up to the materialisation's reported total."),
    dg.AssetCheckSpec("no_secrets", asset="batch_ledger",
                      description="No API key value appears in any column."),
]  # fmt: skip


def api_key_values() -> list[str]:
    keys = (
        os.environ.get(f"{spec.env_prefix}_API_KEY") for spec in load_facts().providers.values()
    )
    return [k for k in keys if k]


@dg.asset(
    deps=submission_assets,
    partitions_def=batches,
    check_specs=CHECKS,
    kinds={"parquet"},
    tags={"seedance/stage": "ledger"},
    description=(
        "The batch's partition of the Parquet ledger at `<data dir>/ledger/batch=<batch>/`: one row "
        "per catalog request with prompt, seed, provider task id, status, error, tokens, estimated and "
        "actual cost, the provider's video URL, our durable copy with its sha256 and measured size, "
        "fps and duration, timestamps, and whether it came from the sandbox emulator. Materialised by "
        "the task sensor once the batch has nothing in flight."
    ),
)
def batch_ledger(
    context: dg.AssetExecutionContext, seedance: SeedanceResource
) -> dg.MaterializeResult:
    settings = seedance.settings()
    ledger = write_batch_ledger(settings, context.partition_key)
    written = pq.read_table(ledger.path).to_pandas()  # read back what readers will see
    statuses = Counter(written["status"])
    total = float(sum(r.cost_usd or 0.0 for r in ledger.records))
    sandbox_rows = int(written["sandbox"].fillna(False).sum())
    if sandbox_rows:
        context.log.warning(
            f"SANDBOX: {sandbox_rows} rows of this ledger come from the local emulator, not a provider"
        )

    expected = {r.request_id for r in ledger.records}
    ids = list(written["request_id"])
    succeeded = written[written["status"] == "succeeded"]
    bad_videos = [
        row.request_id for row in succeeded.itertuples()
        if not row.video_uri or file_sha256(row.video_uri) != row.video_sha256
    ]  # fmt: skip
    costs = written["cost_usd"].fillna(0.0)
    secrets = api_key_values()
    pattern = "|".join(re.escape(k) for k in secrets)
    leaks = [
        c for c in written.columns if pattern and written[c].astype(str).str.contains(pattern).any()
    ]
    checks = [
        dg.AssetCheckResult(check_name="one_row_per_request", passed=bool(len(ids) == len(set(ids)) and set(ids) == expected),
                            metadata={"rows": len(ids), "distinct": len(set(ids)), "requests": len(expected)}),
        dg.AssetCheckResult(check_name="succeeded_rows_have_verified_videos", passed=not bad_videos,
                            metadata={"succeeded": len(succeeded), "unverified": dg.MetadataValue.json(bad_videos[:20])}),
        dg.AssetCheckResult(check_name="costs_add_up", passed=bool((costs >= 0).all() and abs(costs.sum() - total) < 1e-6),
                            metadata={"ledger_total_usd": float(costs.sum()), "reported_total_usd": total}),
        dg.AssetCheckResult(check_name="no_secrets", passed=not leaks,
                            metadata={"keys_checked": len(secrets), "columns_with_a_key": dg.MetadataValue.json(leaks)}),
    ]  # fmt: skip
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(ledger.path)),
            "rows": len(written),
            "by_status": dg.MetadataValue.json(dict(statuses)),
            **{f"status_{s}": int(n) for s, n in statuses.items()},
            "cost_usd": total,
            "cost_usd_estimated": float(written["cost_usd_estimated"].fillna(0).sum()),
            "sandbox_rows": sandbox_rows,
            "SANDBOX": dg.MetadataValue.text(
                "yes: rows from the local emulator" if sandbox_rows else "no"
            ),
            "schema": dg.TableSchemaMetadataValue(
                dg.TableSchema(
                    columns=[
                        dg.TableColumn(c, str(t))
                        for c, t in zip(
                            ["batch", *written.columns],
                            ["string", *map(str, written.dtypes)],
                            strict=False,
                        )
                    ]
                )
            ),
            "columns": dg.MetadataValue.json(COLUMNS),
        },
        check_results=checks,
    )
