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
