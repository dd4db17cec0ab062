"""/healthz: 200 when the database and the broker answer, 503 naming the one that does not."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent


def test_healthy_when_database_and_broker_answer(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["database"], body["broker"]) == ("ok", "ok", "ok")
    assert set(body["worker_heartbeat_age_seconds"]) == {"inbound", "outbound", "sync"}


def test_an_unreachable_broker_answers_503_naming_it(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["broker"]
    assert response.json()["database"] == "ok"


@pytest.mark.redis
def test_a_live_redis_broker_is_reported_healthy(client, settings):
    assert settings.CELERY_BROKER_URL.startswith("redis://")
    assert client.get("/healthz").json()["broker"] == "ok"


def test_an_unreachable_database_answers_503_naming_it():
    # A fresh process, so its database really is unreachable (not a mock of the check).
    script = (
        "import django, json; django.setup();"
        "from django.test import Client;"
        "r = Client().get('/healthz'); print(json.dumps({**json.loads(r.content), 'http_status': r.status_code}))"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none",
    }
    env.pop("REDIS_URL", None), env.pop("CELERY_BROKER_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout.strip().splitlines()[-1])
    assert body["http_status"] == 503
    assert body["failing"] == ["database"]
    assert body["broker"] == "ok"


def test_with_the_database_unreachable_the_api_and_the_pages_answer_503_with_retry_after():
    """Not a 500: the client is told to retry (the fault runs in bench/faults.py restart PostgreSQL mid-load)."""
    script = (
        "import django, json; django.setup();"
        "from django.test import Client;"
        "api = Client().get('/api/v1/trunks/', HTTP_AUTHORIZATION='Token pmp_abcd1234_' + 'x' * 32);"
        "browser = Client(); browser.cookies['sessionid'] = 'a' * 32;"
        "page = browser.get('/admin/');"
        "print(json.dumps([api.status_code, api['Retry-After'], json.loads(api.content), page.status_code,"
        " page['Retry-After'], page.content.decode()]))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings", "DATABASE_URL": "postgres://nobody@127.0.0.1:1/x"}
    env.pop("REDIS_URL", None), env.pop("CELERY_BROKER_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    api_status, api_retry, api_body, page_status, page_retry, page_text = json.loads(result.stdout.splitlines()[-1])
    detail = "The database is unavailable for a moment. Please retry."
    assert (api_status, api_retry, api_body) == (503, "5", {"detail": detail})
    assert (page_status, page_retry, page_text) == (503, "5", detail)
    assert "database unavailable for GET /api/v1/trunks/" in result.stderr
