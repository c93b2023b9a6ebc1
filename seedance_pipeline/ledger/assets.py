"""The ledger partition of a batch, and the checks that guard it."""

from collections import Counter

import dagster as dg

from seedance_pipeline.jobs import LEDGER_ASSET, OWNERS, SUBMISSION_ASSETS
from seedance_pipeline.ledger.checks import CHECK_DESCRIPTIONS, ledger_checks
from seedance_pipeline.ledger.rows import COLUMNS, read_partition
from seedance_pipeline.ledger.summary import failures_by_kind, provider_summaries
from seedance_pipeline.ledger.write import secret_values, write_batch_ledger
from seedance_pipeline.metadata import link, tag_run
from seedance_pipeline.partitions import batches
from seedance_pipeline.resources import SeedanceResource

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
        "with one example message each, and `batch_report`, the link to the batch's contact sheet."
    ),
)
def batch_ledger(
    context: dg.AssetExecutionContext, seedance: SeedanceResource
) -> dg.MaterializeResult:
    settings = seedance.settings()
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

    outcomes = ledger_checks(written, ledger.request_ids, total, secret_values())
    checks = [
        dg.AssetCheckResult(
            check_name=o.name,
            passed=bool(o.passed),
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
            "sandbox_rows": sandbox_rows,
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
