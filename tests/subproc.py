"""Waiting on a child process by events (a file appears, a line is printed), never by timing it."""
import time

import pytest

HANG_GUARD_S = 900  # only stops a hung child; never a claim about speed (bench/ times things)


def wait_until(event, proc, what: str) -> None:
    """Poll ``event()`` until it holds; fail if ``proc`` (a subprocess) exits first, or hangs past the guard."""
    t0 = time.monotonic()
    while not event():
        assert proc.poll() is None, f"the child exited (code {proc.returncode}) before {what}"
        if time.monotonic() - t0 > HANG_GUARD_S:
            proc.kill()
            pytest.fail(f"hang guard: the child never reached {what}")
        time.sleep(0.02)
