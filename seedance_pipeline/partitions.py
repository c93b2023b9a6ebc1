"""The `batches` partitions: one partition per catalog batch, added when the catalog is read, so
every batch shows in the Dagster UI and can be backfilled."""

import dagster as dg

batches = dg.DynamicPartitionsDefinition(name="batches")
