"""PostgreSQL claims: four processes claiming at once against one provider limit and one budget
(the README's several machines), in claims per second in total, with no slot or dollar over-claimed."""

from __future__ import annotations

import multiprocessing
import time
from collections import deque
from pathlib import Path
from typing import Any

from benchmarks.harness import Result, postgres_server
from benchmarks.steps import FAILED, PENDING, RequestRecord, SpendCap, StateStore, TaskMove

PROCESSES, LIMIT, HOLD, RESERVATION = 4, 8, 3, 0.25


def run(scale: float, repeats: int, work: Path) -> Result:
    claims = max(200, int(4000 * scale))  # what the budget allows
    cap = claims * RESERVATION
    with postgres_server() as server, server.database() as name:
        url = server.url(name)
        store = StateStore(url)
        store.add_new([
            RequestRecord(request_id=f"{n:032x}", batch="b", catalog_row=n, provider="modelark",
                          model="seedance-1-0-lite-i2v-250428", request={"prompt": "p", "image": "i.jpg", "seed": n},
                          status=PENDING, cost_usd_estimated=RESERVATION)
            for n in range(claims + claims // 4)  # more than the budget allows
        ])  # fmt: skip
        store.refresh_statistics()  # as the catalog job does after adding rows
        ids = [f"{n:032x}" for n in range(claims + claims // 4)]
        context = multiprocessing.get_context("spawn")
        barrier, results, stop = context.Barrier(PROCESSES + 1), context.Queue(), context.Event()
        workers = [context.Process(target=_claimer, args=(url, ids[p::PROCESSES], cap, barrier, results))
                   for p in range(PROCESSES)]  # fmt: skip
        monitor = context.Process(target=_monitor, args=(url, barrier, stop, results))
        for process in [*workers, monitor]:
            process.start()
        reports = [results.get(timeout=600) for _ in workers]
        stop.set()
        most = results.get(timeout=60)
        for process in [*workers, monitor]:
            process.join(30)
        claimed = sum(r["claimed"] for r in reports)
        elapsed = max(r["elapsed"] for r in reports)
        spent = store.spend()
        store.engine.dispose()
    rate = claimed / elapsed
    most = most["most"]
    exact = claimed == claims and spent <= cap + 1e-9
    ok = rate >= 200 and most <= LIMIT and exact
    return Result("pg_claims", f"{rate:,.0f} claims/s ({claimed:,} in {elapsed:.1f} s)", "—", "—",
                  "≥ 200 claims/s, never over the limit or the cap", ok,
                  notes=[f"{PROCESSES} processes, limit {LIMIT} in flight (most seen {most}), "
                         f"cap ${cap:,.2f} (claimed ${claimed * RESERVATION:,.2f}, committed ${spent:,.2f})"])  # fmt: skip


def _claimer(url: str, ids: list[str], cap: float, barrier: Any, results: Any) -> None:
    """Claims its share of the requests in turn, holding up to HOLD at once (more than its share of
    the limit, so the limit binds): a claimed task is created, and the oldest held one ends once
    HOLD are held or a claim must wait, as tasks end at the provider."""
    store = StateStore(url)
    caps = [SpendCap("daily", cap, since=0)]
    held: deque[str] = deque()
    claimed, waits = 0, 0
    barrier.wait()
    started = time.perf_counter()
    queue = deque(ids)
    while queue:
        why = store.claim(queue[0], "modelark", LIMIT, RESERVATION, True, caps)
        if why is None:
            request_id = queue.popleft()
            store.move(request_id, TaskMove.TASK_CREATED, task_id=f"cgt-{request_id}")
            held.append(request_id)
            claimed += 1
        elif "spend cap" in why and not held:
            break  # the budget is spent: nothing this process holds will free any
        else:
            waits += 1
        if held and (len(held) >= HOLD or why is not None):
            store.move(held.popleft(), TaskMove.TASK_ENDED, to=FAILED, cost_usd=RESERVATION)
    while held:
        store.move(held.popleft(), TaskMove.TASK_ENDED, to=FAILED, cost_usd=RESERVATION)
    elapsed = time.perf_counter() - started
    store.engine.dispose()
    results.put({"claimed": claimed, "elapsed": elapsed, "waits": waits})


def _monitor(url: str, barrier: Any, stop: Any, results: Any) -> None:
    """Counts the tasks at the provider again and again (each count one consistent snapshot): the
    most ever seen must stay within the limit."""
    store = StateStore(url)
    barrier.wait()
    most = 0
    while not stop.is_set():
        most = max(most, store.active_by_provider().get("modelark", 0))
        time.sleep(0.005)
    store.engine.dispose()
    results.put({"most": most})
