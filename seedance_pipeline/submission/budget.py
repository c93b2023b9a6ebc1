"""Budget stops: when money committed today is over the daily cap (the cap was lowered, or tasks
cost more than estimated), queued tasks that the provider lets us cancel are cancelled, newest
first, until the commitment fits again. Claims already keep new submissions under every cap."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from seedance_pipeline.providers import ErrorKind, ProviderError
from seedance_pipeline.providers.client import ProviderClient
from seedance_pipeline.settings import PipelineSettings, settings_from, spend_cap
from seedance_pipeline.state.claims import start_of_utc_day
from seedance_pipeline.state.lifecycle import Move, RequestStatus
from seedance_pipeline.state.store import StateStore

log = logging.getLogger(__name__)


async def enforce_daily_budget(
    store: StateStore, clients: Mapping[str, ProviderClient], settings: PipelineSettings
) -> int:
    """Cancel queued tasks while today's commitment exceeds the daily cap; returns how many."""
    cap = settings.daily_budget_usd
    if cap is None:
        return 0
    day = start_of_utc_day()
    over = store.spend(day) - cap
    if over <= 1e-9:
        return 0
    cancelled = 0
    candidates = [
        r for r in store.records(statuses=[RequestStatus.IN_FLIGHT])
        if r.provider in clients and clients[r.provider].adapter.build_cancel("x") is not None
        and (r.submitted_at or 0) >= day
    ]  # fmt: skip
    for record in sorted(candidates, key=lambda r: r.submitted_at or 0, reverse=True):
        if over <= 1e-9:
            break
        try:
            await clients[record.provider].cancel(record.task_id or "")
        except ProviderError as error:  # running already, or gone: it will finish and bill
            log.info("could not cancel %s: %s", record.task_id, error)
            continue
        if store.move(record.request_id, Move.BUDGET_CANCEL, error_kind=ErrorKind.BUDGET_STOP,
                      cost_usd=0.0, completed_at=time.time(),
                      error_message=f"cancelled: today's spend was over the ${cap:.2f} cap"):  # fmt: skip
            cancelled += 1
            over -= record.cost_usd_estimated
    if cancelled:
        log.warning(
            "budget stop: cancelled %d queued tasks to stay within $%.2f today", cancelled, cap
        )
    return cancelled


def set_ui_caps(
    settings: PipelineSettings, caps: Mapping[str, float | None], forget: bool, set_by: str | None
) -> str:
    """Store the caps given in `set_budget_job`'s launchpad (-1: no cap; absent: unchanged) in the
    state store, where every later run, sensor tick and schedule reads them; says what changed."""
    store = settings.store()
    if forget:
        store.forget_caps()
    chosen = {name: spend_cap(value, name) for name, value in caps.items() if value is not None}
    store.set_caps(chosen, set_by)
    now = settings_from(stored_caps=True, state_url=settings.state_url, data_dir=settings.data_dir)
    done = (["forgot the caps set in the UI"] if forget else []) + [
        f"set {name} to {'no cap' if cap is None else f'${cap:.4f}'}"
        for name, cap in chosen.items()
    ]
    return f"{'; '.join(done) or 'nothing changed'}: now {now.caps_shown()}"
