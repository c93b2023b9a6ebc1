"""Retries: backoff with jitter, Retry-After honoured with a cap, and never a blind retry of a
create call whose outcome is unknown."""

from __future__ import annotations

import random

import pytest

from seedance_pipeline.emulator import EmulatorServer, Faults
from seedance_pipeline.providers import ErrorKind, GenerationRequest, ProviderError, TaskStatus
from seedance_pipeline.providers.client import RetryPolicy
from seedance_pipeline_tests.conftest import (
    MODEL_OF,
    PROVIDER_PER_API,
    ImageFactory,
    client_for,
    run,
    run_to_end,
)

FAST = RetryPolicy(attempts=5, base_s=0.01, cap_s=0.05, retry_after_cap_s=0.3)


def gen(provider: str, image: object) -> GenerationRequest:
    return GenerationRequest(
        provider, MODEL_OF[provider], str(image), prompt="p", resolution="480p"
    )


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    policy = RetryPolicy(attempts=10, base_s=1, cap_s=8, retry_after_cap_s=30)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (7, 8)]:
        delays = [policy.delay(attempt, None, rng) for _ in range(200)]
        assert min(delays) >= 0 and max(delays) <= ceiling and max(delays) > ceiling * 0.8
    assert policy.delay(1, 12.0, rng) == 12.0  # Retry-After wins over backoff...
    assert policy.delay(1, 3600.0, rng) == 30  # ...up to its cap


@pytest.mark.parametrize("provider", PROVIDER_PER_API)
def test_a_429_burst_is_ridden_out_and_reported_to_the_limiter(
    emulator: EmulatorServer, make_image: ImageFactory, provider: str
) -> None:
    emulator.state.set_faults(provider, Faults(rate_limit_burst=3, retry_after="0.05"))
    seen = {"limited": 0, "accepted": 0}

    async def go() -> TaskStatus:
        async with client_for(emulator, provider, retry=FAST) as client:
            client.on_rate_limited = lambda: seen.__setitem__("limited", seen["limited"] + 1)
            client.on_accepted = lambda: seen.__setitem__("accepted", seen["accepted"] + 1)
            return (await run_to_end(client, gen(provider, make_image()))).status

    assert run(go()) is TaskStatus.SUCCEEDED
    assert seen == {"limited": 3, "accepted": 1}
    assert (
        len(emulator.state.audit(provider)) == 1 and emulator.state.calls[(provider, "submit")] == 4
    )


def test_retries_stop_after_the_last_attempt(
    emulator: EmulatorServer, make_image: ImageFactory
) -> None:
    emulator.state.set_faults("novita", Faults(rate_limit_burst=50))

    async def go() -> None:
        async with client_for(emulator, "novita", retry=FAST) as client:
            await client.submit(gen("novita", make_image()))

    with pytest.raises(ProviderError) as caught:
        run(go())
    assert (
        caught.value.kind is ErrorKind.RATE_LIMITED
        and emulator.state.calls[("novita", "submit")] == 5
    )


@pytest.mark.parametrize("fault", ["server_error_rate", "drop_rate", "malformed_rate"])
def test_a_create_with_unknown_outcome_is_never_retried(emulator: EmulatorServer, make_image: ImageFactory,
                                                        fault: str) -> None:  # fmt: skip
    emulator.state.set_faults("modelark", Faults(**{fault: 1.0}, apply_to=("submit",)))

    async def go() -> None:
        async with client_for(emulator, "modelark", retry=FAST) as client:
            await client.submit(gen("modelark", make_image()))

    with pytest.raises(ProviderError) as caught:
        run(go())
    assert caught.value.outcome_unknown
    assert (
        emulator.state.calls[("modelark", "submit")] == 1
    )  # one call, however many attempts allowed


def test_polls_are_retried_through_transient_faults(
    emulator: EmulatorServer, make_image: ImageFactory
) -> None:
    emulator.state.set_faults(
        "aimlapi", Faults(server_error_rate=0.5, drop_rate=0.3, apply_to=("poll",))
    )

    async def go() -> TaskStatus:
        async with client_for(
            emulator, "aimlapi", retry=RetryPolicy(attempts=12, base_s=0.01, cap_s=0.05)
        ) as client:
            return (await run_to_end(client, gen("aimlapi", make_image()))).status

    assert run(go()) is TaskStatus.SUCCEEDED
    assert emulator.state.calls[("aimlapi", "poll")] > 1
