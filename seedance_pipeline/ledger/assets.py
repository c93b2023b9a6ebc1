"""The ledger partition of a batch, and the checks that guard it."""

from collections import Counter

import dagster as dg

from seedance_pipeline.jobs import LEDGER_ASSET, OWNERS, SUBMISSION_ASSETS
from seedance_pipeline.ledger.checks import CHECK_DESCRIPTIONS, ledger_checks
from seedance_pipeline.ledger.rows import COLUMNS, read_partition
from seedance_pipeline.ledger.summary import (
    cost_per_passing_clip,
    failure_share,
    failure_table,
    failures_by_kind,
    provider_summaries,
    qc_counts,
)
from seedance_pipeline.ledger.write import secret_values, write_batch_ledger
from seedance_pipeline.metadata import link, tag_run
from seedance_pipeline.partitions import batches
from seedance_pipeline.resources import LedgerResource, SeedanceResource

CHECKS = [
    dg.AssetCheckSpec(name, asset=LEDGER_ASSET, description=text)
    for name, text in CHECK_DESCRIPTIONS.items()
]


PROVIDERS_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("provider", "string"),
        dg.TableColumn("rows", "int"),
        dg.TableColumn("succeeded", "int"),
        dg.TableColumn("failed", "int"),
        dg.TableColumn("rejected", "int"),
        dg.TableColumn("other", "int", "pending, unknown, expired or cancelled"),
        dg.TableColumn("cost_usd", "float", "actual"),
        dg.TableColumn("cost_usd_estimated", "float", "estimated before submission"),
    ]
)
FAILURES_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("error_kind", "string", "the status where no kind was recorded"),
        dg.TableColumn("rows", "int"),
        dg.TableColumn("statuses", "string"),
        dg.TableColumn("example_image_id", "string"),
        dg.TableColumn("example_message", "string", "as in the ledger (free of secrets)"),
    ]
)


@dg.asset(
    name=LEDGER_ASSET,
    deps=SUBMISSION_ASSETS,
    partitions_def=batches,
    check_specs=CHECKS,
    kinds={"parquet"},
    tags={"seedance/stage": "ledger"},
    group_name="ledger",
    owners=OWNERS,
    description=(
        "The batch's partition of the Parquet ledger at `<ledger>/batch=<batch>/` (`<data dir>/ledger` or "
        "`ledger_url`, e.g. on S3): one row "
        "per catalog request with prompt, seed, provider task id, status, error, tokens, estimated and "
        "actual cost, the provider's video URL, our durable copy with its sha256 and measured size, "
        "fps and duration, timestamps, and whether it came from the sandbox emulator. Materialised by "
        "the task sensor once the batch has nothing in flight. Its metadata shows counts by status, "
        "cost (estimated, actual, budget left), a table per provider, failures grouped by kind "
        "with one example message each, `failures`: every failed row with its message, QC "
        "verdicts (`qc`) and the cost per clip that passes QC (`cost_per_passing_clip_usd`), and "
        "`batch_report`, the link to the batch's contact sheet."
    ),
)
def batch_ledger(
    context: dg.AssetExecutionContext,
    seedance: SeedanceResource,
    seedance_ledger: LedgerResource,
) -> dg.MaterializeResult:
    settings = seedance.settings(seedance_ledger)
    tag_run(context)
    ledger = write_batch_ledger(settings, context.partition_key)
    written = read_partition(ledger.path).to_pandas()  # read back what readers will see
    statuses = Counter(written["status"])
    total = ledger.cost_usd
    context.log.info(
        f"wrote {len(written)} rows of {context.partition_key} to {ledger.path} "
        f"({', '.join(f'{s} {n}' for s, n in sorted(statuses.items()))}); cost ${total:.4f}"
    )
    sandbox_rows = int(written["sandbox"].fillna(False).sum())
    if sandbox_rows:
        context.log.warning(
            f"SANDBOX: {sandbox_rows} rows of this ledger come from the local emulator, not a provider"
        )

    outcomes = ledger_checks(
        written, ledger.request_ids, total, secret_values(), settings.max_failure_share
    )
    checks = [
        dg.AssetCheckResult(
            check_name=o.name,
            passed=bool(o.passed),
            severity=dg.AssetCheckSeverity.WARN if o.warn_only else dg.AssetCheckSeverity.ERROR,
            metadata={
                k: v if isinstance(v, int | float | str) else dg.MetadataValue.json(v)
                for k, v in o.metadata.items()
            },
        )
        for o in outcomes
    ]
    report = settings.report_urls(context.partition_key)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(ledger.path)),
            # Written by `batch_report` in the same run, just after this asset.
            "batch_report": link(report.contact_sheet),
            "batch_report_chart": link(report.chart),
            "rows": len(written),
            "by_status": dg.MetadataValue.json(dict(statuses)),
            **{f"status_{s}": int(n) for s, n in statuses.items()},
            "cost_usd": round(total, 4),  # dollars to the hundredth of a cent; the ledger keeps all
            "cost_usd_estimated": round(float(written["cost_usd_estimated"].fillna(0).sum()), 4),
            "providers": dg.MetadataValue.table(
                [dg.TableRecord(vars(p)) for p in provider_summaries(written)], PROVIDERS_SCHEMA
            ),
            "failures_by_kind": dg.MetadataValue.table(
                [dg.TableRecord(vars(f)) for f in failures_by_kind(written)], FAILURES_SCHEMA
            ),
            # Every failed row, not one per kind: what to look at before `retry_job`.
            "failures": dg.MetadataValue.md(failure_table(written)),
            "failed_rows": failure_share(written)[0],
            "total_cost_usd": float(written["total_cost_usd"].fillna(0).sum()),  # all attempts
            "retried_rows": int((written["attempts"] > 1).sum()),
            "sandbox_rows": sandbox_rows,
            # What a dataset team budgets by: the cost of every row over the clips that pass QC.
            "qc": dg.MetadataValue.json(qc_counts(written)),
            "cost_per_passing_clip_usd": _per_passing_clip(cost_per_passing_clip(written)),
            **settings.budget_metadata(settings.store(), context.partition_key),
            "budget_caps": dg.MetadataValue.text(settings.caps_shown()),  # and where each came from
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


def _per_passing_clip(cost: float | None) -> float | dg.MetadataValue:
    return cost if cost is not None else dg.MetadataValue.text("no clip passes QC")
