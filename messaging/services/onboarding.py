"""Bulk onboarding: many customers from one CSV — a tenant, its first 3CX trunk, its numbers and its sender ID per row.

onboarding_check() reads and checks the whole file and writes nothing: every row comes back with what it would create,
or with each field that is wrong and why. onboarding_create() checks again (the numbers may have been taken meanwhile)
and then creates every row in one transaction, or nothing: tenants, trunks and number assignments, an audit row per
tenant. The sender ID is not registered at Wavix here — a call to Wavix cannot be rolled back with the rest — but
chosen as the trunk's draft, so that each trunk's setup wizard opens on step 2 (countries) with it: the same
draft step 1 of the wizard would leave.
"""

import csv
import io
import re
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from messaging.models import PhoneNumber, SenderID, Trunk, WavixAccount, alphanumeric_problems, to_e164
from messaging.services.accounts import phone_number_save, trunk_save
from messaging.services.setup import remember
from tenants import access
from tenants.models import AuditEvent, Reseller, Tenant
from tenants.services import tenant_save

COLUMNS = ["tenant", "default_country", "trunk_name", "pbx_fqdn", "numbers", "sender_id"]
REQUIRED = ["tenant", "trunk_name", "pbx_fqdn"]
# A file is created in one request, in one transaction: at about 27 ms a customer (docs/benchmarks.md), 500 rows take
# about 14 s, well within the web server's 30 s; a reseller with more customers uploads several files.
MAX_ROWS = 500
MAX_BYTES = 1_000_000
TEMPLATE_ROWS = [
    ["Acme Dental", "US", "Main office", "acme-dental.3cx.us", "+14155550100 +14155550101", "+14155550100"],
    ["Bistro Uno", "GB", "Restaurant", "bistro-uno.3cx.uk", "+447400123456", "BistroUno"],
]


def template_csv() -> str:
    """The file to start from: the header and two example customers."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    writer.writerows(TEMPLATE_ROWS)
    return out.getvalue()


@dataclass
class Plan:
    """One row of the file: what it would create, or what is wrong with it (field → reason)."""

    line: int  # the line in the file, header = 1, as a spreadsheet numbers it
    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    tenant: Tenant | None = None
    trunk: Trunk | None = None
    numbers: list[PhoneNumber] = field(default_factory=list)
    draft: dict[str, Any] | None = None  # the sender ID, as the wizard's step 1 would remember it

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        if self.tenant is None or self.trunk is None:
            return ""
        parts = [f"tenant {self.tenant.name}", f"trunk {self.trunk.name} ({self.trunk.pbx_fqdn})"]
        if self.numbers:
            parts.append(f"{len(self.numbers)} number(s): {', '.join(n.number for n in self.numbers)}")
        if self.draft:
            parts.append(f"sender ID {self.draft['value']} (registered from the setup wizard)")
        return "; ".join(parts)


@dataclass
class Check:
    """The whole file: its rows, and what is wrong with the file itself (no rows are read then)."""

    plans: list[Plan] = field(default_factory=list)
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem and bool(self.plans) and all(plan.ok for plan in self.plans)

    @property
    def bad_rows(self) -> list[Plan]:
        return [plan for plan in self.plans if not plan.ok]


def _read(content: bytes | str) -> tuple[list[dict[str, str]], str]:
    """The rows as dicts by column, or a problem with the file as a whole. Commas or semicolons (a spreadsheet set
    to a European locale saves with them), UTF-8 with or without a byte-order mark."""
    if isinstance(content, bytes):
        if len(content) > MAX_BYTES:
            return [], f"The file is larger than {MAX_BYTES // 1_000_000} MB: split it."
        try:
            content = content.decode("utf-8-sig")
        except UnicodeDecodeError:
            return [], "The file is not UTF-8 text: save it from the spreadsheet as “CSV UTF-8”."
    content = content.lstrip("\ufeff")
    first = content.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(content), delimiter=delimiter)
    try:
        table = [row for row in reader]
    except csv.Error as error:
        return [], f"The file is not a CSV the portal can read: {error}."
    if not table:
        return [], "The file is empty: start from the template."
    header = [name.strip().lower().replace(" ", "_") for name in table[0]]
    missing = [name for name in COLUMNS if name not in header]
    unknown = [name for name in header if name and name not in COLUMNS]
    if missing or unknown:
        said = []
        if missing:
            said.append(f"missing column(s): {', '.join(missing)}")
        if unknown:
            said.append(f"unknown column(s): {', '.join(unknown)}")
        return [], f"The first line must name the columns {', '.join(COLUMNS)} — {'; '.join(said)}."
    rows: list[dict[str, str]] = []
    for cells in table[1:]:
        if not any(cell.strip() for cell in cells):
            rows.append({})  # a blank line: skipped, but it keeps the line numbers right
            continue
        rows.append({name: (cells[i].strip() if i < len(cells) else "") for i, name in enumerate(header) if name})
    if sum(1 for row in rows if row) > MAX_ROWS:
        return [], f"At most {MAX_ROWS} customers per file: split it."
    if not any(rows):
        return [], "The file has no customer rows under its header."
    return rows, ""


def _split_numbers(cell: str) -> list[str]:
    return [part for part in re.split(r"[\s,;]+", cell) if part]


def _as_e164(written: str, region: str) -> str | None:
    """A number as E.164, or None. A spreadsheet saves +14155550100 as 14155550100 (it took it for a number), so
    digits alone are read with a + first; a national number is read in the row's country."""
    for attempt in (written, f"+{written}" if written.isdigit() else None):
        if attempt is None:
            continue
        try:
            return to_e164(attempt, region or None)
        except ValidationError:
            continue
    return None


def _first_message(error: ValidationError) -> dict[str, str]:
    return {name: " ".join(messages) for name, messages in error.message_dict.items()}


def _plan_row(plan: Plan, reseller: Reseller, user: User, seen: dict[str, dict[str, int]], *, lock: bool) -> None:
    """Fill the plan with unsaved rows and every problem, field by field (with `lock`, the numbers' rows are locked
    until the transaction ends, so that no one else assigns them meanwhile)."""
    values, errors = plan.values, plan.errors
    for name in REQUIRED:
        if not values.get(name):
            errors[name] = "Required."
    name = values.get("tenant", "")
    if name:
        first = seen["tenant"].setdefault(name.casefold(), plan.line)
        if first != plan.line:
            errors["tenant"] = f"Also on line {first}: one row per customer."
        elif Tenant.objects.filter(reseller=reseller, name__iexact=name).exists():
            errors["tenant"] = f"{reseller} already has a tenant named {name}."
    tenant = Tenant(reseller=reseller, name=name, default_country=values.get("default_country", "").upper())
    tenant.slug = slugify(name)[:50] or "tenant"
    try:
        tenant.full_clean(exclude=["slug"], validate_unique=False, validate_constraints=False)
    except ValidationError as error:
        for field_name, message in _first_message(error).items():
            errors.setdefault("default_country" if field_name == "default_country" else "tenant", message)
    plan.tenant = tenant

    trunk = Trunk(name=values.get("trunk_name", ""), pbx_fqdn=values.get("pbx_fqdn", ""))
    try:
        trunk.full_clean(exclude=["tenant"], validate_unique=False, validate_constraints=False)
    except ValidationError as error:
        for field_name, message in _first_message(error).items():
            column = {"name": "trunk_name", "pbx_fqdn": "pbx_fqdn"}.get(field_name, "trunk_name")
            errors.setdefault(column, message)
    plan.trunk = trunk

    region = tenant.default_country if "default_country" not in errors else ""
    assignable = access.changeable(user, PhoneNumber).filter(account__reseller=reseller).select_related("account")
    if lock:
        assignable = assignable.select_for_update(of=("self",))
    for written in _split_numbers(values.get("numbers", "")):
        e164 = _as_e164(written, region)
        if e164 is None:
            errors["numbers"] = f"{written} is not a phone number: write it with + and the country code."
            break
        number = assignable.filter(number=e164).first()
        if number is None:
            errors["numbers"] = f"{e164} is not a number on {reseller}'s Wavix accounts (sync the account first)."
            break
        if number.tenant_id:
            errors["numbers"] = f"{e164} is already assigned to {number.tenant}."
            break
        if number.account.tenant_id:
            errors["numbers"] = f"{e164} is on {number.account}, the Wavix account of {number.account.tenant}."
            break
        first = seen["number"].setdefault(e164, plan.line)
        if first != plan.line:
            errors["numbers"] = f"{e164} is also on line {first}: a number serves one customer."
            break
        if number not in plan.numbers:
            plan.numbers.append(number)

    sender = values.get("sender_id", "")
    if sender:
        as_number = _as_e164(sender.lstrip("+"), "") if sender.lstrip("+").isdigit() else None
        if sender.lstrip("+").isdigit() and as_number is None:
            errors["sender_id"] = f"{sender} is not a phone number: write it with + and the country code."
        elif as_number is not None:
            chosen = next((n for n in plan.numbers if n.number == as_number), None)
            if chosen is None:
                errors["sender_id"] = (
                    f"{as_number} is not among this row's numbers: a numeric sender ID is one of them."
                )
            else:
                plan.draft = {"type": SenderID.Type.NUMERIC, "value": chosen.number, "number": chosen.pk}
        elif problems := alphanumeric_problems(sender):
            errors["sender_id"] = " ".join(problems)
        elif WavixAccount.objects.filter(reseller=reseller, tenant=None).count() != 1:
            errors["sender_id"] = (
                f"{reseller} needs exactly one shared Wavix account to register {sender} on (it has none, or several)."
            )
        else:
            plan.draft = {"type": SenderID.Type.ALPHANUMERIC, "value": sender}


def onboarding_check(content: bytes | str, *, reseller: Reseller, user: User, lock: bool = False) -> Check:
    """Read and check the file; nothing is written."""
    rows, problem = _read(content)
    if problem:
        return Check(problem=problem)
    check = Check()
    seen: dict[str, dict[str, int]] = {"tenant": {}, "number": {}}
    for offset, values in enumerate(rows):
        if not values:
            continue
        plan = Plan(line=offset + 2, values=values)
        _plan_row(plan, reseller, user, seen, lock=lock)
        check.plans.append(plan)
    return check


def _unique_slug(reseller: Reseller, name: str, taken: set[str]) -> str:
    base = slugify(name)[:50] or "tenant"
    slug, n = base, 2
    while slug in taken or Tenant.objects.filter(reseller=reseller, slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    taken.add(slug)
    return slug


def onboarding_create(content: bytes | str, *, reseller: Reseller, actor: User, source: str = "") -> Check:
    """Check the file again and, if every row is right, create all of it in one transaction (else nothing);
    returns the check, whose plans hold the saved tenants and trunks when it is ok."""
    try:
        with transaction.atomic():
            check = onboarding_check(content, reseller=reseller, user=actor, lock=True)
            if check.ok:
                _create(check, reseller=reseller, actor=actor, source=source)
    except IntegrityError:
        # Someone else created a tenant of the same name (or slug) between the check and the insert.
        return Check(problem="Someone else changed these customers while this file was being created: check it again.")
    except ValidationError as error:  # a rule of a save the check does not know of: its words, and nothing written
        return Check(problem=f"Nothing was created: {' '.join(error.messages)}")
    return check


def _create(check: Check, *, reseller: Reseller, actor: User, source: str) -> None:
    slugs: set[str] = set()
    for plan in check.plans:
        assert plan.tenant is not None and plan.trunk is not None  # a plan that is ok has both
        plan.tenant.slug = _unique_slug(reseller, plan.tenant.name, slugs)
        tenant = tenant_save(actor=actor, tenant=plan.tenant)
        plan.trunk.tenant = tenant
        trunk = trunk_save(actor=actor, trunk=plan.trunk)
        for number in plan.numbers:
            number.tenant, number.trunk = tenant, trunk
            phone_number_save(number=number)
        if plan.draft:
            remember(trunk, draft=plan.draft)
        AuditEvent.record(
            AuditEvent.Action.TENANT_ONBOARDED,
            tenant,
            actor=actor,
            changes={
                "file": source[:200],
                "line": plan.line,
                "trunk": f"{trunk.name} ({trunk.pbx_fqdn})",
                "numbers": [n.number for n in plan.numbers],
                "sender_id": plan.draft["value"] if plan.draft else "",
            },
        )
