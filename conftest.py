"""Test-run guards. With PORTAL_REQUIRE_SERVICES=1 (CI) the suite must run on PostgreSQL and Redis, and a
single skipped test fails the run: nothing is allowed to pass by not running."""

import os

import pytest

REQUIRE_SERVICES = os.environ.get("PORTAL_REQUIRE_SERVICES") == "1"


def _service_problems() -> list[str]:
    from django.conf import settings
    from django.db import connection

    from portal.views import _broker_ok, _database_ok

    problems = []
    if connection.vendor != "postgresql":
        problems.append(f"the database is {connection.vendor}, not PostgreSQL (set DATABASE_URL)")
    elif not _database_ok():
        problems.append("PostgreSQL does not answer at DATABASE_URL")
    if not settings.CELERY_BROKER_URL.startswith("redis"):
        problems.append("the broker is not Redis (set REDIS_URL)")
    elif not _broker_ok():
        problems.append("Redis does not answer at REDIS_URL")
    return problems


def pytest_collection_modifyitems(config, items):
    from django.conf import settings
    from django.db import connection

    reasons = {
        "postgres": None if connection.vendor == "postgresql" else "needs PostgreSQL: set DATABASE_URL",
        "redis": None if settings.CELERY_BROKER_URL.startswith("redis") else "needs Redis: set REDIS_URL",
    }
    for item in items:
        for marker, reason in reasons.items():
            if reason and item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", autouse=True)
def _required_services(django_db_setup, django_db_blocker):
    if REQUIRE_SERVICES:
        with django_db_blocker.unblock():
            problems = _service_problems()
        if problems:
            pytest.exit("PORTAL_REQUIRE_SERVICES=1 but " + "; ".join(problems), returncode=3)


def pytest_sessionfinish(session, exitstatus):
    if not REQUIRE_SERVICES:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(
            f"PORTAL_REQUIRE_SERVICES=1: {len(skipped)} test(s) skipped, which fails the run.", red=True
        )
        session.exitstatus = 1
