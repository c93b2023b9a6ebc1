"""`seedance-pipeline run` against a provider answering a mix of hostile answers: it exits 0 with
every row terminal, prints no traceback, writes the key nowhere, and keeps within its spend cap."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from seedance_pipeline.emulator.video import render_mp4
from seedance_pipeline.providers import GenerationRequest, adapter_for
from seedance_pipeline.settings import settings_from
from seedance_pipeline.state.lifecycle import TERMINAL
from seedance_pipeline_tests.conftest import ImageFactory
from seedance_pipeline_tests.hostile.providers import (
    AIML_GENERATION,
    ARK_TASKS,
    KEY,
    NOVITA_RESULT,
    ark_task,
    novita_task,
)
from seedance_pipeline_tests.hostile.server import Answer, Call, HostileServer

EXE = str(Path(sys.executable).with_name("seedance-pipeline"))
ARK_IDS = ["garbled", "cgt-neg", "cgt-big", "cgt-nonsense", "cgt-file"]
NOVITA_IDS = ["nv\r\n1", "echo", "nv-3"]


def script(server: HostileServer) -> None:
    video = render_mp4(None, 64, 64, 1)
    server.script("GET", "/v/*", Answer(body=video))
    good = f"{server.url}/v/ok.mp4"
    ark_ids, novita_ids = iter(ARK_IDS), iter(NOVITA_IDS)

    def ark_create(call: Call) -> Answer:
        task_id = next(ark_ids, "cgt-extra")
        if task_id == "garbled":
            return Answer(body=b"[" * 100_000 + b"]" * 100_000)
        return Answer(json={"id": task_id})

    def ark_list(call: Call) -> Answer:
        found = ark_task("cgt-found", status="running", created_at=int(time.time()))
        return Answer(json={"items": [ark_task("cgt-odd", status=["running"]), found], "total": 2})

    def ark_poll(call: Call) -> Answer:
        task_id = call.path.rsplit("/", 1)[1]
        fields: dict[str, Any] = {
            "cgt-neg": {"tokens": -1_000_000},
            "cgt-big": {"tokens": 10**30},
            "cgt-nonsense": {"status": ["succeeded"]},
            "cgt-file": {"video_url": "file:///etc/passwd"},
        }.get(task_id, {})
        return Answer(json=ark_task(task_id, **{"video_url": good, **fields}))

    def novita_create(call: Call) -> Answer:
        task_id = next(novita_ids, "nv-extra")
        if task_id == "echo":
            return Answer(400, json={"reason": "INVALID_API_KEY", "message": f"bad key {KEY}"})
        return Answer(json={"task_id": task_id})

    server.script("POST", ARK_TASKS, ark_create)
    server.script("GET", ARK_TASKS, ark_list)
    server.script("GET", f"{ARK_TASKS}/*", ark_poll)
    server.script("POST", "/novita/v3/async/*", novita_create)
    server.script("GET", NOVITA_RESULT, lambda call: Answer(json=novita_task(
        call.query.get("task_id", ""), reason=f"upstream said {KEY}")))  # fmt: skip
    server.script("POST", AIML_GENERATION, Answer(json={"id": "gen-1", "status": "queued"}))
    server.script("GET", AIML_GENERATION, Answer(json={"id": "gen-1", "status": "completed",
        "video": {"url": good}, "meta": {"usage": {"credits_used": -2e7}}}))  # fmt: skip


def test_a_run_under_hostile_answers_ends_cleanly_within_its_cap(
    hostile: HostileServer, tmp_path: Path, state_url: str, make_image: ImageFactory
) -> None:
    script(hostile)
    image = make_image(1280, 720)
    rows = [{"image": str(image), "prompt": f"p{i}", "provider": p, "resolution": "480p",
             "duration": 5, "batch": "hostile"}
            for i, p in zip(itertools.count(), ["modelark"] * 5 + ["novita"] * 3 + ["aimlapi"])]  # fmt: skip
    catalog = tmp_path / "catalog.csv"
    pd.DataFrame(rows).to_csv(catalog, index=False)
    estimates = sum(
        adapter_for(r["provider"]).estimate_cost(GenerationRequest(
            r["provider"], adapter_for(r["provider"]).spec.default_model, "x", r["prompt"],
            resolution="480p", duration=5)).usd
        for r in rows
    )  # fmt: skip
    cap = round(estimates * 1.01, 4)
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items()
           if not k.endswith(("_API_KEY", "_BASE_URL")) and not k.startswith("SEEDANCE_")}  # fmt: skip
    for provider in ("modelark", "novita", "aimlapi"):
        prefix = adapter_for(provider).spec.env_prefix
        env[f"{prefix}_API_KEY"] = KEY
        env[f"{prefix}_BASE_URL"] = f"{hostile.url}/{provider}"
    if not state_url.startswith("sqlite"):
        env["SEEDANCE_STATE_URL"] = state_url
    started = time.monotonic()
    result = subprocess.run(
        [EXE, "run", "--catalog", str(catalog), "--data-dir", str(data), "--no-progress",
         "--daily-budget-usd", str(cap)],
        env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output and KEY not in output
    assert elapsed < 300

    store = settings_from(env, data_dir=str(data)).store()
    records = store.records()
    assert len(records) == len(rows)
    assert all(r.status in TERMINAL for r in records), [(r.task_id, r.status) for r in records]
    by_task = {r.task_id: r for r in records}
    assert by_task["cgt-found"].status == "succeeded"  # the garbled create, found in the task list
    assert by_task["cgt-nonsense"].error_kind == "malformed_answers"
    assert by_task["cgt-file"].error_kind == "video_lost"
    assert by_task["cgt-neg"].cost_anomaly and by_task["cgt-big"].cost_anomaly
    assert by_task["gen-1"].cost_anomaly
    assert all((r.cost_usd or 0) >= 0 for r in records)
    assert 0 < store.spend() <= cap
    with store.engine.connect() as conn:
        dumped = "\n".join(str(row) for table in ("requests", "transitions")
                           for row in conn.execute(sa.text(f"SELECT * FROM {table}")))  # fmt: skip
    assert KEY not in dumped
    leaked = [p for p in data.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert leaked == []
    ledger = pd.read_parquet(data / "ledger")
    assert len(ledger) == len(rows) and ledger["cost_anomaly"].notna().sum() == 3
