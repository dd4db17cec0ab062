"""bench/scale.py at a tiny size, so the benchmark keeps working as the pages change."""

import pytest

from bench import scale
from tests import factories as f


def test_a_count_over_every_message_is_flagged_and_a_bounded_one_is_not():
    messages = 'FROM "messaging_message" WHERE "messaging_message"."tenant_id" = 5'
    assert scale.unbounded_counts([f'SELECT COUNT(*) AS "__count" {messages}'])
    assert scale.unbounded_counts([f'SELECT COUNT(*) FROM (SELECT "messaging_message"."id" {messages}) subquery'])
    assert not scale.unbounded_counts(
        [f'SELECT COUNT(*) FROM (SELECT "messaging_message"."id" {messages} LIMIT 10001) s']
    )
    assert not scale.unbounded_counts(
        [f'SELECT COUNT("messaging_message"."id") {messages} AND "messaging_message"."created_at" >= \'2026-11-24\'']
    )
    # A count of tenants whose filter looks at messages counts tenants, not messages.
    assert not scale.unbounded_counts(
        ['SELECT COUNT("tenants_tenant"."id") FILTER (WHERE "tenants_tenant"."id" IN (SELECT U0."tenant_id" '
         'FROM "messaging_message" U0)) AS "x" FROM "tenants_tenant"']
    )  # fmt: skip


@pytest.mark.django_db
def test_the_scale_benchmark_runs_at_a_tiny_size(other_tenant, settings):
    settings.TWO_FACTOR_ENFORCED = True  # as outside the tests: the benchmark's admin gives a second factor
    other = f.MessageFactory(tenant=other_tenant, to_number="+14155550199")
    world = scale.generate(tenants=3, messages=300)

    pages = scale.measure(world, requests=2, warmup=0)

    assert [len(page.timings) for page in pages] == [2] * len(pages)
    assert all(not page.unbounded for page in pages), [page.unbounded for page in pages]
    assert "| message log of the busiest tenant" in scale.table(pages, "tiny")
    # The benchmark's reseller admin sees its 300 messages and nothing of another reseller's.
    from messaging.models import Message
    from tenants import access

    assert access.visible(world.admin, Message).count() == 300
    assert not access.visible(world.admin, Message).filter(pk=other.pk).exists()
