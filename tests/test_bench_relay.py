"""bench/relay.py's pieces at a tiny size, so the benchmark keeps working as the relay changes: its client, fake 3CX,
data and waiting against the live server, with the relay run in-process instead of by Celery workers."""

import types
from urllib.parse import urlsplit

import pytest

from messaging.models import Message
from messaging.services import forwarding, inbound
from tests.conftest import live_db

pytestmark = live_db


def test_the_relay_benchmark_runs_at_a_tiny_size(wavix):
    from bench import relay

    port = urlsplit(wavix.url).port
    with relay.FakeThreeCX(delay_seconds=0.01) as fake:  # a PBX 10 ms away
        lines = relay.prepare(fake, tenants=2)
        ceiling = relay.ceiling(fake.port, [relay.Item("/ceiling/", b"{}", f"c{n}") for n in range(30)], 4, "to_3cx")
        assert ceiling["intake"]["requests"] == 30 and fake.posts == 0  # the ceiling's POSTs are not forwards

        # Inbound: the webhooks through the portal's intake over HTTP, relayed in-process to the fake 3CX.
        items = relay.inbound_items(lines, 12, conversations=3)
        sending = relay.post_all(port, items, clients=3)
        assert len(sending.sent) == 12 and not sending.errors
        inbound.events_process()
        while forwarding.deliveries_process():
            pass
        keys = list(sending.sent)
        relay.wait_until(lambda: len(fake.arrived_of(keys)), len(keys), "inbound", workers=[], stall=5)
        arrived = fake.arrived_of(keys)
        relayed = relay._result("inbound", sending, arrived) | {"timeline": relay.timeline(sending, keys, arrived)}
        assert relayed["end_to_end"]["requests"] == 12 and relayed["end_to_end"]["p50"] > 0
        assert 0 <= relayed["timeline"]["first_routed"] <= relayed["timeline"]["last_forward"]
        assert Message.objects.filter(direction="inbound", status="forwarded").count() == 12

        # Delivery reports, paced: applied to the outbound messages, seen by the watcher, never forwarded to 3CX.
        ids = relay.outbound_messages(lines, 8)
        watcher = relay.StatusWatcher(ids, "delivered")
        watcher.start()
        try:
            sending = relay.post_paced(port, relay.report_items(lines, ids), clients=2, rate=200)
            inbound.events_process()
            relay.wait_until(lambda: len(watcher.seen), 8, "reports", workers=[], stall=5)
        finally:
            watcher.stop()
        reports = relay._result("reports", sending, watcher.seen)
        assert set(Message.objects.filter(pk__in=ids.values()).values_list("status", flat=True)) == {"delivered"}
        assert fake.posts == 12  # the inbound texts only, each once

    import os

    assert relay.peak_rss_kib(os.getpid()) > 0 and relay.reset_peak(os.getpid())
    peaks = {"this process": relay.peak_rss_kib(os.getpid())}
    results = {
        "ceilings": [ceiling, ceiling],
        "inbound": [relayed, relayed | {"rate": 10.0}],
        "reports": [reports, reports | {"rate": 10.0}],
        "rss_inbound": peaks,
        "rss_reports": peaks,
        "peaks_reset": True,
        "forwarded_reports": 0,
        "inbound_repeats": 0,
    }
    args = types.SimpleNamespace(clients=3, conversations=3, paced=0.5, threecx_delay_ms=10.0)
    text = relay.report(results, args)
    assert "| inbound texts, burst: webhook sent → 3CX received | 12 |" in text
    assert "| delivery reports, paced at 10/s (50% of the burst)" in text
    assert "| this process |" in text and "first routed" in text
    assert "the fake 3CX answers after 10 ms" in text


def test_the_scale_out_table_compares_each_worker_count_with_one_worker_and_the_ceiling():
    from bench import relay

    def run(workers: int, rate: float) -> dict:
        return {
            "workers": workers,
            "end_to_end": {"per_second": rate, "p50": 40.0, "p99": 120.0},
            "timeline": {"last_forward": 1000 / rate},
        }

    results = {"insert": {"per_second": 1000.0}, "runs": [run(1, 100.0), run(2, 190.0), run(4, 320.0)]}
    args = types.SimpleNamespace(messages=1000, conversations=100, clients=8, threecx_delay_ms=100.0)
    text = relay.report_scale_out(results, args)
    assert "| 2 | 190 | 1.90× | 19.0 % | 40.0 | 120 | 5.3 |" in text
    assert "| 4 | 320 | 3.20× | 32.0 % |" in text and "100 ms away" in text


@pytest.mark.postgres
def test_the_relay_cpu_benchmark_runs_at_a_tiny_size(wavix):
    """bench/relay_cpu.py's round: routing, forwarding and reports measured per text, every text relayed once."""
    from bench import relay, relay_cpu

    with relay.FakeThreeCX() as fake:
        lines = relay.prepare(fake, tenants=2)
        result = relay_cpu.one_round(lines, types.SimpleNamespace(messages=12, conversations=3), count_queries=True)
        assert fake.posts == 12
    assert set(result) == {"routing", "forwarding", "reports"}
    assert all(cpu > 0 and wall > 0 and statements > 0 for cpu, wall, statements in result.values())
