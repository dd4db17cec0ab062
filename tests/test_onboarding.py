"""Bulk onboarding (issue 19): a 50-customer CSV with five bad rows — the dry run names each bad row and field and
writes nothing; fixed, one run creates the 50 tenants, trunks and number assignments in one transaction, audited,
each trunk opening in its wizard with its sender ID chosen; a failure midway leaves nothing."""

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, OperationalError
from django.urls import reverse

from messaging.models import PhoneNumber, Trunk
from messaging.services import onboarding, setup
from tenants.models import AuditEvent, Tenant
from tests import factories as f

pytestmark = pytest.mark.django_db
CUSTOMERS = 50


@pytest.fixture
def shared(reseller):
    """The reseller's shared Wavix account, with the numbers the customers will get."""
    account = f.WavixAccountFactory(reseller=reseller, tenant=None, name="Shared")
    for i in range(CUSTOMERS * 2):
        f.PhoneNumberFactory(account=account, number=f"+1415555{i:04d}", tenant=None, trunk=None)
    return account


def customer_rows() -> list[list[str]]:
    rows = []
    for i in range(CUSTOMERS):
        numbers = f"+1415555{2 * i:04d} +1415555{2 * i + 1:04d}"
        sender = f"+1415555{2 * i:04d}" if i % 2 == 0 else f"Brand{i:03d}"
        rows.append([f"Customer {i:02d}", "US", "Main office", f"customer-{i:02d}.3cx.us", numbers, sender])
    return rows


def as_csv(rows, *, delimiter=",") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter)
    writer.writerow(onboarding.COLUMNS)
    writer.writerows(rows)
    return out.getvalue().encode()


BAD = {  # row index → (column, value, words the reason must hold)
    4: ("pbx_fqdn", "not a host!", "fully qualified domain name"),
    11: ("numbers", "+14155559999", "not a number on Reseller A's Wavix accounts"),
    17: ("tenant", "Customer 03", "Also on line 5"),
    29: ("default_country", "XX", "not an ISO country code"),
    41: ("sender_id", "ThisSenderIsTooLong", "11"),
}


def with_bad_rows() -> list[list[str]]:
    rows = customer_rows()
    for index, (column, value, _) in BAD.items():
        rows[index][onboarding.COLUMNS.index(column)] = value
    return rows


def upload(client, content: bytes, action="check"):
    return client.post(
        reverse("admin:onboarding"),
        {"customers": SimpleUploadedFile("customers.csv", content, content_type="text/csv"), "action": action},
    )


def nothing_written(reseller) -> bool:
    return (
        not Tenant.objects.filter(reseller=reseller).exclude(name="Tenant A").exists()
        and not Trunk.objects.exists()
        and not PhoneNumber.objects.exclude(tenant=None).exists()
        and not AuditEvent.objects.filter(action=AuditEvent.Action.TENANT_ONBOARDED).exists()
    )


def test_the_dry_run_names_each_bad_row_and_field_and_writes_nothing(client, reseller_admin, reseller, tenant, shared):
    client.force_login(reseller_admin)
    response = upload(client, as_csv(with_bad_rows()))
    assert response.status_code == 200
    check = response.context["check"]
    assert len(check.plans) == CUSTOMERS and not check.ok
    bad = {plan.line: plan.errors for plan in check.bad_rows}
    assert sorted(bad) == sorted(index + 2 for index in BAD)  # the header is line 1
    for index, (column, _, words) in BAD.items():
        assert list(bad[index + 2]) == [column], bad[index + 2]
        assert words in bad[index + 2][column], bad[index + 2][column]
    page = response.content.decode()
    assert "5 row(s) to fix" in page and 'id="create-form"' not in page
    assert 'data-line="6"' in page and "<strong>pbx_fqdn</strong>" in page
    assert nothing_written(reseller)
    # Even a create with the file as it is creates nothing: every row is checked again.
    assert upload(client, as_csv(with_bad_rows()), action="create").context["check"].bad_rows
    assert nothing_written(reseller)


def test_fixed_the_file_creates_all_fifty_customers_in_one_go_each_trunk_opening_in_its_wizard(
    client, reseller_admin, reseller, shared
):
    client.force_login(reseller_admin)
    checked = upload(client, as_csv(customer_rows()))
    assert checked.context["check"].ok and 'id="create-form"' in checked.content.decode()
    assert nothing_written(reseller)
    # The confirmation carries the file back in the form, as the browser would post it.
    done = client.post(
        reverse("admin:onboarding"),
        {"action": "create", "content": checked.context["content"], "source": "customers.csv"},
    )
    assert done.status_code == 200, done.content
    created = Tenant.objects.filter(reseller=reseller, name__startswith="Customer ")
    assert created.count() == CUSTOMERS
    assert Trunk.objects.filter(tenant__in=created).count() == CUSTOMERS
    assert PhoneNumber.objects.filter(tenant__in=created).count() == CUSTOMERS * 2
    first = created.get(name="Customer 00")
    trunk = Trunk.objects.get(tenant=first)
    assert (first.default_country, trunk.name, trunk.pbx_fqdn) == ("US", "Main office", "customer-00.3cx.us")
    assert set(trunk.numbers.values_list("number", flat=True)) == {"+14155550000", "+14155550001"}
    assert setup.progress(trunk)["draft"]["value"] == "+14155550000"
    brand = Trunk.objects.get(tenant__name="Customer 01")
    assert setup.progress(brand)["draft"] == {"type": "alphanumeric", "value": "Brand001"}
    events = AuditEvent.objects.filter(action=AuditEvent.Action.TENANT_ONBOARDED)
    assert events.count() == CUSTOMERS and {e.actor for e in events} == {reseller_admin}
    assert events.get(tenant=first).changes["numbers"] == ["+14155550000", "+14155550001"]
    wizard = reverse("admin:messaging_trunk_setup", args=[trunk.pk])
    assert wizard in done.content.decode()
    opened = client.get(wizard, follow=True)
    assert opened.status_code == 200
    assert opened.redirect_chain[-1][0].endswith(f"/{trunk.pk}/setup/countries/")  # step 1 done: its sender chosen
    # The same file again: every tenant exists now, so every row is refused and nothing more is created.
    again = upload(client, as_csv(customer_rows()), action="create")
    assert len(again.context["check"].bad_rows) == CUSTOMERS
    assert Tenant.objects.filter(reseller=reseller).count() == CUSTOMERS


@pytest.mark.parametrize("failure", [IntegrityError, OperationalError])
def test_a_failure_midway_leaves_nothing(monkeypatch, reseller_admin, reseller, shared, failure):
    real, calls = onboarding.phone_number_save, []

    def fails_on_the_sixtieth(*, number):
        calls.append(number)
        if len(calls) == 60:  # the 30th customer's first number: 29 customers are in by now
            raise failure("the database went away")
        return real(number=number)

    monkeypatch.setattr(onboarding, "phone_number_save", fails_on_the_sixtieth)
    if failure is IntegrityError:
        check = onboarding.onboarding_create(as_csv(customer_rows()), reseller=reseller, actor=reseller_admin)
        assert "check it again" in check.problem and not check.ok
    else:
        with pytest.raises(OperationalError):
            onboarding.onboarding_create(as_csv(customer_rows()), reseller=reseller, actor=reseller_admin)
    assert len(calls) == 60
    assert not Tenant.objects.filter(reseller=reseller).exists()
    assert not Trunk.objects.exists() and not PhoneNumber.objects.exclude(tenant=None).exists()
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.TENANT_ONBOARDED).exists()


def test_a_spreadsheets_semicolons_and_numbers_without_plus_are_read(reseller_admin, reseller, shared):
    rows = customer_rows()[:2]
    rows[0][4] = "14155550000;14155550001"  # a spreadsheet dropped the +, and the cell uses the list separator
    check = onboarding.onboarding_check(as_csv(rows, delimiter=";"), reseller=reseller, user=reseller_admin)
    assert check.ok, [p.errors for p in check.plans]
    assert [n.number for n in check.plans[0].numbers] == ["+14155550000", "+14155550001"]


@pytest.mark.parametrize(
    "content,words",
    [
        (b"", "empty"),
        (b"tenant,trunk_name\nAcme,Main\n", "missing column(s): default_country, pbx_fqdn, numbers, sender_id"),
        (as_csv([]), "no customer rows"),
        (b"tenant,default_country,trunk_name,pbx_fqdn,numbers,sender_id,price\n", "unknown column(s): price"),
        (b"\xff\xfe\x00t", "not UTF-8"),
        (as_csv([["Customer", "US", "Main", "pbx.3cx.us", "", ""]] * (onboarding.MAX_ROWS + 1)), "At most 500"),
    ],
)
def test_a_file_that_is_not_the_template_is_refused_as_a_whole(reseller_admin, reseller, content, words):
    check = onboarding.onboarding_check(content, reseller=reseller, user=reseller_admin)
    assert words in check.problem and not check.plans


def test_numbers_of_another_reseller_or_already_assigned_are_refused(reseller_admin, reseller, shared, other_tenant):
    theirs = f.PhoneNumberFactory(account=f.WavixAccountFactory(reseller=other_tenant.reseller), number="+14155558888")
    PhoneNumber.objects.filter(number="+14155550003").update(tenant=f.TenantFactory(reseller=reseller, name="Taken"))
    rows = customer_rows()[:2]
    rows[0][4] = theirs.number
    check = onboarding.onboarding_check(as_csv(rows), reseller=reseller, user=reseller_admin)
    assert "not a number on Reseller A's Wavix accounts" in check.plans[0].errors["numbers"]
    assert "+14155550003 is already assigned to Taken" in check.plans[1].errors["numbers"]


def test_the_template_downloads_and_only_managers_onboard(client, reseller_admin, viewer, operator):
    client.force_login(operator)
    template = client.get(reverse("admin:onboarding_template"))
    assert template.status_code == 200 and template["Content-Type"].startswith("text/csv")
    assert template.content.decode().splitlines()[0] == ",".join(onboarding.COLUMNS)
    assert client.get(reverse("admin:onboarding")).status_code == 200
    client.force_login(viewer)
    assert client.get(reverse("admin:onboarding")).status_code == 403
    assert client.get(reverse("admin:onboarding_template")).status_code == 403
