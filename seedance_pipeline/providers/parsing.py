"""Defensive reading of what a provider sends back, in one place.

A provider (or a proxy, or a man in the middle) may answer with anything: a body of a gigabyte,
JSON nested 100,000 deep, a list where a word belongs, `"1e999"` for a seed, a task id with `\\r\\n`
or `../`, an echo of our own API key. Each of these becomes a `MalformedAnswer` for that one task,
or is cleaned before it is logged or stored; nothing here raises anything else.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

MAX_JSON_BYTES = 4 * 2**20  # a task answer is a few kilobytes; a list page of 100 tasks ~200 KiB
MAX_TEXT_CHARS = 1000  # provider messages kept, logged and shown
MAX_URL_CHARS = 8192
INT64 = (-(2**63), 2**63 - 1)  # what a BIGINT column holds on SQLite and PostgreSQL
# Task ids as the providers make them (hex, UUIDs, `cgt-2025...-abcd`): letters, digits and a few
# separators, never `/`, `%`, `?`, `#`, whitespace or control characters.
TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,199}")

T = TypeVar("T")


class MalformedAnswer(ValueError):
    """A 2xx answer whose body is not what the provider documents."""


def bounded_json(body: bytes, limit: int = MAX_JSON_BYTES) -> Any:
    """Parse a JSON body no larger than `limit`; too large, too deep, not UTF-8 or not JSON is a
    `MalformedAnswer` (json's C parser raises RecursionError on deep nesting)."""
    if len(body) > limit:
        raise MalformedAnswer(f"body of {len(body)} bytes is over the {limit} byte limit")
    try:
        return json.loads(body)
    except RecursionError:
        raise MalformedAnswer("body is nested too deep") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedAnswer(f"body is not JSON ({exc.__class__.__name__})") from None


def as_int(value: Any, low: int | None = INT64[0], high: int | None = INT64[1]) -> int | None:
    """A whole number sent as a number or a string ("158881667", "5"); None for anything else,
    including infinities (`"1e999"`), NaN and values outside [low, high] (a column's range)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        if isinstance(value, int):
            number = value
        elif isinstance(value, str) and len(value) > 64:
            return None
        elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            number = int(value)  # exact, where float() would round past 2**53
        else:
            real = float(value)
            if not math.isfinite(real):
                return None
            number = int(real)
    except (TypeError, ValueError, OverflowError):
        return None
    if (low is not None and number < low) or (high is not None and number > high):
        return None
    return number


def reported_usage(value: Any, what: str) -> tuple[int | None, str | None]:
    """A billed usage (tokens, credits) as reported: the whole number, or None and why it cannot
    be read. Absent is (None, None); negative or huge numbers are returned for the cost to judge."""
    if value is None or value == "":
        return None, None
    number = as_int(value, None, None)
    if number is None or (isinstance(value, float | str) and as_float(value) != number):
        return None, f"reported {what} {clean_text(repr(value), 40)} is not a whole number"
    return number, None


def as_float(value: Any) -> float | None:
    """A finite number sent as a number or a string; None for anything else."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def status_word(table: Mapping[str, T], raw: Any, what: str = "task status") -> T:
    """The status a word maps to; a non-string (`["succeeded"]`) or an unknown word is malformed."""
    if not isinstance(raw, str) or raw not in table:
        raise MalformedAnswer(f"unknown {what} {clean_text(repr(raw), 80)}")
    return table[raw]


def is_safe_task_id(value: Any) -> bool:
    return isinstance(value, str) and TASK_ID.fullmatch(value) is not None


def safe_task_id(value: Any) -> str:
    """A task id fit to go into a URL path and a log line; anything else is malformed."""
    if not is_safe_task_id(value):
        raise MalformedAnswer(f"task id {clean_text(repr(value), 80)} is not a plain id")
    return value


def safe_url(value: Any) -> str | None:
    """A URL from an answer, fit to store: a string without control characters or spaces."""
    if value is None or value == "":
        return None
    if (
        not isinstance(value, str)
        or len(value) > MAX_URL_CHARS
        or any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in value)
    ):
        raise MalformedAnswer(f"URL {clean_text(repr(value), 80)} is not a plain URL")
    return value


def has_control_characters(text: str, allow: str = "") -> bool:
    """NUL and other control characters (PostgreSQL refuses NUL in text; SQLite keeps it), except
    those in `allow` (a prompt may hold line breaks and tabs)."""
    return any(unicodedata.category(ch) == "Cc" and ch not in allow for ch in text)


def clean_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """Provider text fit to log, store and show: control characters escaped, at most `limit`."""
    if has_control_characters(text):
        text = "".join(
            ch if unicodedata.category(ch) != "Cc" else f"\\x{ord(ch):02x}" for ch in text
        )
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every known secret value replaced by `***` (a provider may echo our key back in
    an error message; it must not reach a log, the state store or the ledger)."""
    for secret in secrets:
        if secret and len(secret) >= 6 and secret in text:
            text = text.replace(secret, "***")
    return text
