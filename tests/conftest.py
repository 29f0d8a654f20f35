"""Shared pytest setup. Fixture modules for real components live in tests/fixtures/."""

pytest_plugins: list[str] = [
    # each real component's fixtures in its own module (broker, postgres, prometheus, slack_api, ...)
    "tests.fixtures.postgres",
    "tests.fixtures.slack_api",
    "tests.fixtures.broker",
    "tests.fixtures.prometheus",
]
