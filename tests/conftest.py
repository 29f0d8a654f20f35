"""Shared pytest setup. Fixture modules for real components live in tests/fixtures/."""

import os

from hypothesis import settings

pytest_plugins: list[str] = [
    # each real component's fixtures in its own module (broker, postgres, prometheus, slack_api, ...)
    "tests.fixtures.postgres",
    "tests.fixtures.slack_api",
    "tests.fixtures.pagerduty_api",
    "tests.fixtures.broker",
    "tests.fixtures.prometheus",
    "tests.fixtures.redis",
]

# Locally hypothesis explores new examples on every run (and keeps failures in .hypothesis/);
# CI replays a fixed, derandomized set so a submission's verdict does not depend on luck.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
