"""bench/faults.py's counting and reporting: what counts as forwarded, duplicated, failed and lost."""

from bench.faults import Tally, render, retry_horizon, tally
from messaging.services.relay import RETRY_DELAYS


def test_every_accepted_id_is_forwarded_failed_with_a_reason_or_lost():
    result = tally(
        stored={"a", "b", "c", "d", "e"},
        acknowledged={"a", "f"},  # "f" was answered 200 but never stored: accepted, and lost
        arrivals=["a", "b", "b", "c"],  # "b" reached 3CX twice
        failed={"d": "3CX answered 404", "e": ""},  # "e" failed without a reason: lost
    )
    assert (result.accepted, result.arrived, result.duplicated, result.failed, result.lost) == (6, 3, 1, 1, 2)
    assert result.lost_ids == ["e", "f"]
    assert result.contradicted == 0


def test_an_id_marked_failed_that_arrived_anyway_counts_as_arrived_and_is_flagged():
    result = tally(stored={"a"}, acknowledged=set(), arrivals=["a"], failed={"a": "gave up"})
    assert (result.arrived, result.failed, result.lost, result.contradicted) == (1, 0, 0, 1)


def test_the_retry_horizon_of_a_five_minute_3cx_outage_is_almost_ten_minutes():
    # A text refused at 229 s waits 10 s, 60 s, then 5 min: its try at 599 s is the first after the outage.
    assert retry_horizon(300, RETRY_DELAYS) == 599
    assert retry_horizon(0, RETRY_DELAYS) == 0
    assert retry_horizon(20, (10, 60)) == 79  # refused at 9 s: tries at 19 s, then 79 s
    assert retry_horizon(100, (10,)) == float("inf")  # a schedule that gives up before the outage ends


def test_the_report_is_one_markdown_table_with_lost_in_bold_when_not_zero():
    rows = [
        {
            "scenario": "redis-restart (inbound)",
            "what": "t=5 s Redis shut down",
            "seconds": 61.4,
            "tally": Tally(10, 10, 1, 0, 0),
        },
        {"scenario": "3cx-down (inbound)", "what": "t=5 s 3CX 500", "seconds": 700, "tally": Tally(10, 8, 0, 1, 1)},
    ]
    lines = render(rows).splitlines()
    assert len(lines) == 4 and all(line.startswith("|") and line.endswith("|") for line in lines)
    assert lines[2] == "| redis-restart (inbound) | t=5 s Redis shut down | 10 | 10 | 1 | 0 | 0 | 61 s |"
    assert lines[3].split(" | ")[-2] == "**1**"
