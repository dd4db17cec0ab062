"""The embedded default: SQLite in WAL mode with IMMEDIATE transactions, so web and worker can write at once.

Runs in separate processes on a temporary SQLite file, whatever database the suite itself uses.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WRITER = """
import django
django.setup()
from django.db import connection, transaction
errors = 0
for _ in range({rounds}):
    try:
        # Read, then write: the pattern that deadlocks two deferred SQLite transactions.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT n FROM counter WHERE id = 1")
            (n,) = cursor.fetchone()
            cursor.execute("UPDATE counter SET n = %s WHERE id = 1", [n + 1])
    except Exception as error:
        errors += 1
print("errors", errors)
"""


def sqlite_env(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}
    return {**env, "PORTAL_VAR_DIR": str(var_dir), "DJANGO_SETTINGS_MODULE": "portal.settings"}


def run_python(code: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)


def test_two_processes_read_and_write_the_same_row_without_errors_or_lost_updates(tmp_path):
    env = sqlite_env(tmp_path)
    setup = run_python(
        "import django; django.setup()\n"
        "from django.db import connection\n"
        "c = connection.cursor()\n"
        "c.execute('PRAGMA journal_mode'); print(c.fetchone()[0])\n"
        "c.execute('CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)')\n"
        "c.execute('INSERT INTO counter VALUES (1, 0)')\n",
        env,
    )
    assert setup.communicate(timeout=60)[0].strip() == "wal"
    rounds = 300
    writers = [run_python(WRITER.format(rounds=rounds), env) for _ in range(2)]
    outputs = [w.communicate(timeout=120)[0].strip() for w in writers]
    assert outputs == ["errors 0", "errors 0"]
    check = run_python(
        "import django; django.setup()\nfrom django.db import connection\n"
        "c = connection.cursor(); c.execute('SELECT n FROM counter'); print(c.fetchone()[0])",
        env,
    )
    assert int(check.communicate(timeout=60)[0]) == 2 * rounds
