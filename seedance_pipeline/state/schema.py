"""The state store's tables, and how a store is created or upgraded in place.

Every machine's first run creates the schema, and a newer version opens an older store: columns
and indexes added since are added in place, so task ids in an older state file stay readable.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from seedance_pipeline.providers.facts import load_facts

BUDGET_LOCK = "__budgets__"  # lock row taken by every claim that checks a spend cap
SCHEMA_LOCK_KEY = 0x5EEDA9CE  # PostgreSQL advisory lock held while the schema is created

metadata = sa.MetaData()

# Catalog text (batch, image id, provider and model as written, even in rejected rows), task and run
# ids are Text: PostgreSQL enforces VARCHAR lengths where SQLite ignores them.
requests_table = sa.Table(
    "requests",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("batch", sa.Text, nullable=False, index=True),
    sa.Column("catalog_row", sa.Integer, nullable=False),
    sa.Column("image_id", sa.Text),
    sa.Column("provider", sa.Text, nullable=False, index=True),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("request_json", sa.Text, nullable=False),
    sa.Column("image_sha256", sa.String(64)),
    sa.Column("image_width", sa.Integer),
    sa.Column("image_height", sa.Integer),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("task_id", sa.Text),
    sa.Column("error_kind", sa.String(50)),
    sa.Column("error_message", sa.Text),
    sa.Column("seed_used", sa.BigInteger),
    sa.Column("tokens", sa.BigInteger),
    sa.Column("cost_usd_estimated", sa.Float, nullable=False, default=0.0),
    sa.Column("cost_usd", sa.Float),
    sa.Column("video_url", sa.Text),
    sa.Column("video_uri", sa.Text),
    sa.Column("last_frame_uri", sa.Text),  # the provider's last frame, kept (return_last_frame)
    sa.Column("video_sha256", sa.String(64)),
    sa.Column("video_bytes", sa.BigInteger),
    sa.Column("video_width", sa.Integer),
    sa.Column("video_height", sa.Integer),
    sa.Column("video_fps", sa.Float),
    sa.Column("video_duration_s", sa.Float),
    # Video QC (seedance_pipeline.qc), measured once when the video is kept; never its status.
    sa.Column("qc_status", sa.String(10), index=True),  # pass, warn or fail; a retry selects fail
    sa.Column("qc_reasons", sa.Text),
    sa.Column("qc_frames", sa.Integer),
    sa.Column("qc_audio", sa.Boolean),
    sa.Column("qc_black_share", sa.Float),
    sa.Column("qc_motion", sa.Float),
    sa.Column("qc_frozen_share", sa.Float),
    sa.Column("qc_first_psnr", sa.Float),
    sa.Column("qc_first_ssim", sa.Float),
    sa.Column("qc_last_psnr", sa.Float),
    sa.Column("qc_last_ssim", sa.Float),
    sa.Column("submitted_at", sa.Float),  # when the request was claimed for submission
    sa.Column("sent_at", sa.Float),  # when the create call whose outcome is unknown was sent
    sa.Column("completed_at", sa.Float),
    sa.Column("sandbox", sa.Boolean),
    sa.Column("run_id", sa.Text),  # the Dagster run (or headless run) that submitted it
    sa.Column("polled_at", sa.Float, nullable=False, default=0.0),
    # When the create call of a request in `submitting` can no longer be running (its client's
    # whole deadline, retries included): after it, a process that died mid-call is known dead.
    sa.Column("call_deadline_at", sa.Float),
    sa.Column("malformed_polls", sa.Integer),  # answers in a row we could not read
    sa.Column("fetch_attempts", sa.Integer),  # failed attempts to keep the video
    sa.Column("cost_anomaly", sa.Text),  # a reported usage not trusted (the formula was used)
    sa.Column("updated_at", sa.Float, nullable=False),
    # Earlier attempts of this request (retries), archived in `attempts`: how many, what they cost.
    sa.Column("attempts_before", sa.Integer),
    sa.Column("cost_usd_before", sa.Float),
)

sa.Index("requests_provider_status", requests_table.c.provider, requests_table.c.status)
sa.Index("requests_batch_row", requests_table.c.batch, requests_table.c.catalog_row)  # ledger order

transitions_table = sa.Table(
    "transitions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, index=True),
    sa.Column("from_status", sa.String(20)),
    sa.Column("to_status", sa.String(20), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("detail", sa.Text),
)

# Every finished attempt of a request that was retried, as it ended: the request row then holds the
# new attempt. Spend caps count these attempts' cost too (`claims.spend`).
attempts_table = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, index=True),
    sa.Column("batch", sa.Text, nullable=False, index=True),
    sa.Column("attempt", sa.Integer, nullable=False),  # 1 for the first
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("task_id", sa.Text),
    sa.Column("error_kind", sa.String(50)),
    sa.Column("error_message", sa.Text),
    sa.Column("seed", sa.BigInteger),  # as asked
    sa.Column("seed_used", sa.BigInteger),
    sa.Column("tokens", sa.BigInteger),
    sa.Column("cost_usd_estimated", sa.Float),
    sa.Column("cost_usd", sa.Float),
    sa.Column("submitted_at", sa.Float, index=True),
    sa.Column("completed_at", sa.Float),
    sa.Column("sandbox", sa.Boolean),
    sa.Column("run_id", sa.Text),
    sa.Column("archived_at", sa.Float, nullable=False),
    # The attempt's kept video and its QC verdict (a QC retry keeps the failed one's evidence).
    sa.Column("video_uri", sa.Text),
    sa.Column("qc_status", sa.String(10)),
    sa.Column("qc_reasons", sa.Text),
    sa.Column("qc_first_ssim", sa.Float),
    # Every outcome column of the attempt and its request, as JSON: what `keep_best_attempt`
    # restores onto the request row when this attempt is better than the latest.
    sa.Column("outcome_json", sa.Text),
)

provider_locks_table = sa.Table(
    "provider_locks",
    metadata,
    sa.Column("provider", sa.String(50), primary_key=True),
    sa.Column("claims", sa.BigInteger, nullable=False, default=0),
    # Adaptive limit of tasks in flight: halved on a 429, raised by one per accepted task, never
    # above the configured limit. None means "the configured limit".
    sa.Column("current_limit", sa.Integer),
)

# Spend caps set from the Dagster UI (`set_budget_job`): they win over the environment's, and sensors
# and schedules read them at every tick. No row: not set here; a NULL cap: no cap.
budget_caps_table = sa.Table(
    "budget_caps",
    metadata,
    sa.Column("name", sa.String(50), primary_key=True),  # a setting's name, e.g. daily_budget_usd
    sa.Column("cap_usd", sa.Float),
    sa.Column("set_at", sa.Float, nullable=False),
    sa.Column("set_by", sa.Text),  # the Dagster run that set it
)


def default_state_url(data_dir: str | Path) -> str:
    path = Path(data_dir).resolve() / "state.sqlite"
    return f"sqlite:///{path}"


def shown_url(url: str) -> str:
    """A state URL as logs and errors may show it: password hidden. A URL whose password was not
    URL-quoted is refused without being echoed, since part of the password would show as its host
    or port (`user:p@ss@host` parses as host `ss@host`)."""
    refusal = ("the state store URL cannot be parsed; URL-quote special characters in its password "
               "(urllib.parse.quote_plus)")  # fmt: skip
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        raise ValueError(refusal) from None
    if "@" in (parsed.host or ""):
        raise ValueError(refusal)
    return parsed.render_as_string(hide_password=True)


def create_or_upgrade(engine: Engine) -> None:
    """Make the tables, add what older versions lack, and make every lock row."""
    with _schema_lock(engine):
        metadata.create_all(engine)
        _add_missing_columns(engine)
        _ensure_lock_rows(engine)


@contextmanager
def _schema_lock(engine: Engine) -> Iterator[None]:
    """Every machine's first run creates (or upgrades) the schema; on PostgreSQL, concurrent
    CREATE TABLEs collide in its catalog, so they take turns under an advisory lock."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK_KEY})
            conn.commit()


def _add_missing_columns(engine: Engine) -> None:
    """Columns added since a store was created are added in place (all are nullable), so an
    older state file keeps its task ids readable after an upgrade. On PostgreSQL, columns
    that older versions made VARCHAR(n) and are now Text are widened (no rewrite of the
    table): PostgreSQL enforces the length, and long catalog values would fail."""
    inspector = sa.inspect(engine)
    widen = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            present = {c["name"]: c["type"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                kind = column.type.compile(dialect=engine.dialect)
                found = present.get(column.name)
                if found is None:
                    conn.execute(
                        sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')
                    )
                elif widen and isinstance(column.type, sa.Text) and not isinstance(found, sa.Text):
                    conn.execute(sa.text(
                        f'ALTER TABLE {table.name} ALTER COLUMN "{column.name}" TYPE {kind}'
                    ))  # fmt: skip
            for index in table.indexes:  # indexes added since, too (create_all skips them)
                index.create(conn, checkfirst=True)


def _ensure_lock_rows(engine: Engine) -> None:
    """One lock row per provider, and one for budgets, made up front so that concurrent first
    claims never race on inserting them."""
    names = [*load_facts().providers, BUDGET_LOCK]
    with engine.begin() as conn:
        present = {p for (p,) in conn.execute(sa.select(provider_locks_table.c.provider))}
        for name in names:
            if name not in present:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            sa.insert(provider_locks_table).values(provider=name, claims=0)
                        )
                except sa.exc.IntegrityError:
                    pass  # another process made it first
