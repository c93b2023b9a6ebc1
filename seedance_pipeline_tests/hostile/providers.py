"""Clients and canned answers of each provider API, pointed at the hostile server."""

from __future__ import annotations

from typing import Any

from seedance_pipeline.providers import adapter_for
from seedance_pipeline.providers.client import NO_RETRY, ProviderClient, ProviderConfig, Secret
from seedance_pipeline_tests.hostile.server import HostileServer

# Distinctive, so a test can prove it appears nowhere it should not.
KEY = "sk-hostile-NEVER-SHOWN-5b1e9d"

ARK_TASKS = "/modelark/contents/generations/tasks"
NOVITA_RESULT = "/novita/v3/async/task-result"
AIML_GENERATION = "/aimlapi/v2/generate/video/bytedance/generation"


def config(server: HostileServer, provider: str, timeout_s: float = 2.0) -> ProviderConfig:
    return ProviderConfig(provider, f"{server.url}/{provider}", Secret(KEY), timeout_s=timeout_s,
                          retry=NO_RETRY)  # fmt: skip


def client(server: HostileServer, provider: str, timeout_s: float = 2.0) -> ProviderClient:
    return ProviderClient(adapter_for(provider), config(server, provider, timeout_s))


def ark_task(task_id: str, status: Any = "succeeded", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": task_id, "model": "seedance-1-0-lite-i2v-250428",
                            "status": status, "seed": 7, "created_at": 0}  # fmt: skip
    if status == "succeeded":
        body["content"] = {"video_url": fields.pop("video_url", "https://videos.example/v.mp4")}
        body["usage"] = {"completion_tokens": fields.pop("tokens", 48600)}
    body.update(fields)
    return body


def novita_task(task_id: str, status: str = "TASK_STATUS_FAILED", **task: Any) -> dict[str, Any]:
    return {"task": {"task_id": task_id, "status": status, "reason": "it failed", **task},
            "extra": {}, "videos": []}  # fmt: skip
