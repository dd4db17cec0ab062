"""Production settings refuse to start without their secrets; malformed values fail loudly; check --deploy is clean."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "x7$k2!q9#v4@m8^p1&z6*w3(r5)t0_y-u+i=o[e]a{s}d|f;g:h'j,k.l/c<b>n?",
    "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "ALLOWED_HOSTS": "portal.example.com",
    "EMAIL_HOST": "smtp.example.com",
    "PUBLIC_BASE_URL": "https://portal.example.com",
}


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in PRODUCTION and k not in ("PYTEST_VERSION",)}
    clean["PORTAL_VAR_DIR"] = str(ROOT / "var" / "test" / "settings-check")
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_check_deploy():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("missing", ["SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "ALLOWED_HOSTS", "EMAIL_HOST"])
def test_production_refuses_to_start_without_a_secret(missing):
    env = {k: v for k, v in PRODUCTION.items() if k != missing}
    result = run_manage("check", **env)
    assert result.returncode != 0
    assert f"{missing} must be set when DEBUG is off" in result.stderr


@pytest.mark.parametrize(
    "name,value,message",
    [
        ("DEBUG", "maybe", "DEBUG='maybe' is not a boolean"),
        ("DB_CONN_MAX_AGE", "ten", "DB_CONN_MAX_AGE='ten' is not an integer"),
        ("LOGIN_LOCKOUT_ENABLED", "maybe", "LOGIN_LOCKOUT_ENABLED='maybe' is not a boolean"),
        ("LOGIN_FAILURE_LIMIT", "0", "LOGIN_FAILURE_LIMIT=0 must be at least 1"),
        ("FIELD_ENCRYPTION_KEYS", "short", "entry #1 is not a Fernet key"),
    ],
)
def test_malformed_values_fail_loudly(name, value, message):
    result = run_manage("shell", "-c", "from messaging import crypto; crypto.encrypt('x')", **{name: value})
    assert result.returncode != 0
    assert message in result.stderr


def test_env_example_lists_every_variable_the_settings_read():
    import re

    source = (ROOT / "portal" / "settings.py").read_text()
    read = set(re.findall(r'env_(?:str|bool|int|list)\("([A-Z_]+)"', source))
    read |= set(re.findall(r'require_in_production\("([A-Z_]+)"', source))
    listed = set(re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), flags=re.M))
    assert read - listed == set(), "add these to .env.example and the README"
    assert listed - read == set(), "these are listed but never read"
