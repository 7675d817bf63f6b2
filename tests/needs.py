"""What some tests need from the machine (Chromium, Alfred's source): without it they skip on a user's machine, with
the reason, and fail under CI=true, where .ci/run provides everything."""
import os

import pytest


def need(ok: bool, why: str):
    "Skip the test unless `ok`; under CI (CI=true) fail instead, since CI must have what `why` names."
    if ok: return
    if os.environ.get("CI"): pytest.fail(f"{why}; CI must have it")
    pytest.skip(why)
