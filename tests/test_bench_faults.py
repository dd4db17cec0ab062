"""bench/faults.py's counting and reporting: what counts as forwarded, duplicated, failed and lost."""

from bench.faults import Tally, render, retry_horizon, tally
from messaging.services.forwarding import RETRY_DELAYS


def once_each(*ids: str) -> list[tuple[str, float]]:
    """Arrivals one second apart, in this order."""
    return [(message_id, float(n)) for n, message_id in enumerate(ids)]


def test_every_accepted_id_is_forwarded_failed_with_a_reason_or_lost():
    result = tally(
        stored={"a", "b", "c", "d", "e"},
        acknowledged={"a", "f"},  # "f" was answered 200 but never stored: accepted, and lost
        arrivals=once_each("a", "b", "b", "c"),  # "b" reached 3CX twice
        failed={"d": "3CX answered 404", "e": ""},  # "e" failed without a reason: lost
    )
    assert (result.accepted, result.arrived, result.duplicated, result.failed, result.lost) == (6, 3, 1, 1, 2)
    assert result.lost_ids == ["e", "f"]
    assert result.contradicted == 0


def test_an_id_marked_failed_that_arrived_anyway_counts_as_arrived_and_is_flagged():
    result = tally(stored={"a"}, acknowledged=set(), arrivals=once_each("a"), failed={"a": "gave up"})
    assert (result.arrived, result.failed, result.lost, result.contradicted) == (1, 0, 0, 1)


def test_a_repeat_of_a_post_in_flight_when_the_worker_was_killed_counts_apart_from_other_duplicates():
    arrivals = [
        ("in-flight", 95.0),  # reached 3CX 5 s before the kill, its answer never recorded …
        ("in-flight", 121.0),  # … and sent again once its lease lapsed: what at-least-once costs
        ("answered-long-before", 50.0),  # 50 s before the kill: longer than a POST can be in flight
        ("answered-long-before", 125.0),
        ("twice-after", 130.0),  # both after the kill: nothing the kill explains
        ("twice-after", 131.0),
        ("thrice", 98.0),  # the first repeat is the kill's, the second is not
        ("thrice", 122.0),
        ("thrice", 140.0),
    ]
    ids = {message_id for message_id, _ in arrivals}
    result = tally(ids, set(), arrivals, {}, kills=(100.0,), in_flight_for=25.0)
    assert (result.arrived, result.duplicated_mid_post, result.duplicated, result.lost) == (4, 2, 3, 0)
    assert result.unexplained == [
        ("answered-long-before", 50.0, 125.0),
        ("thrice", 122.0, 140.0),
        ("twice-after", 130.0, 131.0),
    ]
    without_kill = tally(ids, set(), arrivals, {}, in_flight_for=25.0)
    assert (without_kill.duplicated_mid_post, without_kill.duplicated) == (0, 5)


def test_the_retry_horizon_of_a_five_minute_3cx_outage_is_almost_ten_minutes():
    # A text refused at 229 s waits 10 s, 60 s, then 5 min: its try at 599 s is the first after the outage.
    assert retry_horizon(300, RETRY_DELAYS) == 599
    assert retry_horizon(0, RETRY_DELAYS) == 0
    assert retry_horizon(20, (10, 60)) == 79  # refused at 9 s: tries at 19 s, then 79 s
    assert retry_horizon(100, (10,)) == float("inf")  # a schedule that gives up before the outage ends


def test_the_report_is_one_markdown_table_with_unexplained_duplicates_and_lost_in_bold_when_not_zero():
    rows = [
        {
            "scenario": "worker-kill (inbound)",
            "what": "t=5 s SIGKILL worker + pool",
            "seconds": 61.4,
            "tally": Tally(10, 10, 0, 0, 0, duplicated_mid_post=8),
        },
        {
            "scenario": "3cx-down (inbound)",
            "what": "t=5 s 3CX 500",
            "seconds": 330,
            "tally": Tally(10, 8, 1, 1, 1),
            "recovery": 12.34,
        },
    ]
    lines = render(rows).splitlines()
    assert len(lines) == 4 and all(line.startswith("|") and line.endswith("|") for line in lines)
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[4:9] == [
        "duplicated (worker died mid-POST)",
        "duplicated (other)",
        "failed (with reason)",
        "lost",
        "3CX back → last text delivered",
    ]
    assert lines[2] == "| worker-kill (inbound) | t=5 s SIGKILL worker + pool | 10 | 10 | 8 | 0 | 0 | 0 | — | 61 s |"
    assert lines[3] == "| 3cx-down (inbound) | t=5 s 3CX 500 | 10 | 8 | 0 | **1** | 1 | **1** | 12.3 s | 330 s |"
