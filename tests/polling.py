"""Waiting for what other processes do: one poll loop for every suite."""

import time
from collections.abc import Callable

import pytest


def wait_for(
    condition: Callable[[], object], what: str | Callable[[], str], timeout: float = 30.0
) -> object:
    """Poll ``condition`` until it returns something truthy, and return that. Past the
    deadline, fail saying what did not happen: ``what`` is a text, or a function making one
    from state worth reading only then."""
    deadline = time.monotonic() + timeout
    while True:
        if value := condition():
            return value
        if time.monotonic() > deadline:
            described = what() if callable(what) else what
            pytest.fail(f"not within {timeout:.0f} s: {described}")
        time.sleep(0.1)
