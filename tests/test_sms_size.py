"""The send page's counter and the server count a text the same way: encoding, units, segments.

The server's count is messaging.services.outbound.text_size; the page's is messaging/static/messaging/sms_size.js.
Both run over the same table of cases (tests/sms_size_cases.json) and must give its answers; the JavaScript runs
under node, and its GSM 03.38 tables are compared with the server's.
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

from messaging.services import outbound

CASES = json.loads((Path(__file__).parent / "sms_size_cases.json").read_text())
SCRIPT = Path(settings.BASE_DIR) / "messaging" / "static" / "messaging" / "sms_size.js"
NODE = shutil.which("node")


def run_node(program: str, given: object = None) -> object:
    """Run a program under node with sms_size.js's path as its argument and `given` as JSON on stdin; its JSON."""
    if NODE is None:
        pytest.skip("node is not installed: the counter's JavaScript cannot run here")
    args = [NODE, "-e", program, str(SCRIPT)]
    result = subprocess.run(args, input=json.dumps(given), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_the_server_counts_each_case_as_the_table_says(case):
    assert outbound.text_size(case["text"]) == (case["encoding"], case["units"], case["segments"])


def test_the_pages_counter_counts_every_case_as_the_table_says_and_names_the_character_that_forces_ucs2():
    program = """
        const { smsSize } = require(process.argv[1]);
        const cases = JSON.parse(require("fs").readFileSync(0, "utf8"));
        process.stdout.write(JSON.stringify(cases.map((c) => smsSize(c.text))));
    """
    counted = run_node(program, CASES)
    assert isinstance(counted, list)
    expected = [{k: c[k] for k in ("encoding", "units", "segments", "culprit")} for c in CASES]
    got = [{k: r[k] for k in ("encoding", "units", "segments", "culprit")} for r in counted]
    assert got == expected


def test_the_pages_counter_uses_the_servers_gsm7_tables_and_limits():
    tables = run_node(
        """
        const { GSM7_BASIC, GSM7_EXTENSION, LIMITS } = require(process.argv[1]);
        process.stdout.write(JSON.stringify({basic: [...GSM7_BASIC], extension: [...GSM7_EXTENSION], limits: LIMITS}));
        """
    )
    assert isinstance(tables, dict)
    assert set(tables["basic"]) == outbound.GSM7_BASIC and len(tables["basic"]) == 128 - 1  # 0x1B is the escape
    assert set(tables["extension"]) == outbound.GSM7_EXTENSION
    assert tables["limits"] == dict(outbound.LIMITS)
