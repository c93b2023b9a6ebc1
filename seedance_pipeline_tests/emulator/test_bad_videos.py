"""The emulator's bad-video faults through its admin API: known kinds are taken, others refused."""

from __future__ import annotations

import httpx

from seedance_pipeline.emulator import EmulatorServer


def test_the_admin_api_takes_the_known_bad_videos_and_refuses_others(
    emulator: EmulatorServer,
) -> None:
    url = f"{emulator.url}/_emulator/faults/modelark"
    taken = httpx.put(url, json={"bad_video": "frozen", "bad_video_rate": 0.5})
    assert taken.status_code == 200
    assert (taken.json()["bad_video"], taken.json()["bad_video_rate"]) == ("frozen", 0.5)
    refused = httpx.put(url, json={"bad_video": "purple"})
    assert refused.status_code == 400 and "unknown bad_video 'purple'" in refused.json()["error"]
    assert emulator.state.faults("modelark").bad_video == "frozen"  # the refusal changed nothing
