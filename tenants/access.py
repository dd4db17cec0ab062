"""Who may see and change which rows: the one place that decides.

The admin, the API, the pages and the tasks all ask here. Principals:

- superusers see and change everything;
- platform staff (``is_staff``) act platform-wide through Django model permissions, granted by group
  ("Platform reviewers" holds the sender-ID review permission);
- everyone else acts through active memberships: a reseller admin or operator manages every row of their
  reseller and its tenants (admins also manage people), a tenant viewer reads its own tenant's rows.

A row outside a user's scope simply does not exist for them: views answer 404, never 403 with details.
"""

import operator
from dataclasses import dataclass
from functools import reduce
from typing import Any, Literal, Protocol, TypeVar

from django.db.models import Model, Q, QuerySet

from tenants.models import Membership, Reseller, Tenant

Action = Literal["view", "add", "change", "delete", "replay", "send"]
WRITE_ACTIONS = frozenset({"add", "change", "delete"})

REVIEW_PERMISSION = "messaging.review_senderid"


Level = Literal["managers", "admins"]  # managers = reseller admins and operators

M = TypeVar("M", bound=Model)


class Principal(Protocol):
    """What the rules read off a user: the user model and AnonymousUser (a signed-out request) both fit."""

    @property
    def pk(self) -> Any: ...
    @property
    def is_active(self) -> bool: ...
    @property
    def is_staff(self) -> bool: ...
    @property
    def is_superuser(self) -> bool: ...
    @property
    def is_authenticated(self) -> bool: ...
    def has_perm(self, perm: str) -> bool: ...


@dataclass(frozen=True)
class Rule:
    """How a model's rows reach their owners, who may read them and who may write them."""

    reseller_paths: tuple[str, ...] = ()  # lookups from the row to its reseller's id (any one matches)
    tenant_path: str | None = None  # lookup to its tenant; None = tenant viewers never see these rows
    user_path: str | None = None  # lookup to a user: rows that belong to the requesting person
    readers: Level = "managers"  # which reseller staff read the rows reached through reseller_paths
    # owner = the person user_path names; owner_or_admins adds the admins of the row's reseller
    writers: Level | Literal["owner", "owner_or_admins", "nobody"] = "managers"
    actions: frozenset[str] = WRITE_ACTIONS  # which writes the writers get


RULES: dict[str, Rule] = {
    "tenants.reseller": Rule(("pk",), writers="admins", actions=frozenset({"change"})),
    "tenants.tenant": Rule(("reseller",), "pk"),
    # People are managed by reseller admins; deactivate instead of delete, so the audit trail keeps the row.
    "tenants.membership": Rule(
        ("reseller", "tenant__reseller"), readers="admins", writers="admins", actions=frozenset({"add", "change"})
    ),
    # A token acts as its person: each person creates and revokes their own. A tenant token (for a tenant's
    # integration) is also visible to, and revocable by, the admins of that tenant's reseller.
    "tenants.apitoken": Rule(
        ("tenant__reseller",),
        user_path="user",
        readers="admins",
        writers="owner_or_admins",
        actions=frozenset({"add", "change"}),
    ),
    "messaging.wavixaccount": Rule(("reseller",), "tenant"),
    # Numbers come from Wavix (sync); resellers assign them to tenants and trunks, nothing more.
    "messaging.phonenumber": Rule(("account__reseller",), "tenant", actions=frozenset({"change"})),
    "messaging.trunk": Rule(("tenant__reseller",), "tenant"),
    "messaging.senderid": Rule(("tenant__reseller",), "tenant"),
    # Registration status moves only through review (platform staff) and Wavix sync, never by a reseller.
    "messaging.senderidcountry": Rule(("tenant__reseller",), "tenant", writers="nobody"),
    # The timeline of each registration: the reseller and the tenant read it; only services write it.
    "messaging.registrationevent": Rule(("tenant__reseller",), "tenant", writers="nobody"),
    # Paperwork: the owning reseller's staff upload and read it (and platform reviewers); tenants never see it.
    "messaging.registrationdocument": Rule(("tenant__reseller",), actions=frozenset({"add"})),
    # Messages are records; reseller staff send new ones (the only "write"), viewers read.
    "messaging.message": Rule(("tenant__reseller",), "tenant", actions=frozenset({"send"})),
    # Deliveries are records; reseller staff may replay a failed one (the only "write").
    "messaging.delivery": Rule(("tenant__reseller",), "tenant", actions=frozenset({"replay"})),
    "messaging.optout": Rule(("tenant__reseller",), "tenant", writers="nobody"),
    # Raw bodies from a shared account may concern several tenants: resellers only.
    "messaging.webhookevent": Rule(("account__reseller",), writers="nobody"),
    "tenants.auditevent": Rule(("reseller",), "tenant", writers="nobody"),
    # The dashboard's per-day counts: derived from messages, so readable by whoever reads those messages.
    "messaging.dailymessagecount": Rule(("tenant__reseller",), "tenant", writers="nobody"),
}
# Reference data every signed-in member may read and only platform staff may edit.
PUBLIC_READ = frozenset({"messaging.countryrule"})
# The portal's own workings. Reseller managers and platform staff open their pages; a tenant viewer reads their
# texts, numbers and registrations and sees what the plumbing did only as summaries (the dashboard, a text's page),
# so the rows stay readable to them above (the API's country rules, the dashboard's forwarding figures).
PLUMBING = frozenset({"messaging.webhookevent", "messaging.delivery", "messaging.countryrule"})


@dataclass(frozen=True)
class Grants:
    admin_resellers: frozenset[int]
    manager_resellers: frozenset[int]  # admin or operator
    viewer_tenants: frozenset[int]
    viewer_resellers: frozenset[int]  # the resellers of viewer_tenants

    @property
    def any(self) -> bool:
        return bool(self.manager_resellers or self.viewer_tenants)

    def resellers(self, level: str) -> frozenset[int]:
        return self.admin_resellers if level == "admins" else self.manager_resellers


NO_GRANTS = Grants(frozenset(), frozenset(), frozenset(), frozenset())
_CACHE = "_portal_grants"  # the attribute on the user object that holds its Grants for the request


def _signed_in(user: Principal) -> bool:
    return bool(getattr(user, "is_authenticated", False) and user.is_active)


def grants(user: Principal) -> Grants:
    """The user's active memberships, read once per user object (that is, once per request)."""
    if not _signed_in(user):
        return NO_GRANTS
    cached = getattr(user, _CACHE, None)
    if isinstance(cached, Grants):
        return cached
    admin: set[int] = set()
    manager: set[int] = set()
    viewer: set[int] = set()
    viewer_resellers: set[int] = set()
    for role, reseller_id, tenant_id, tenants_reseller_id in Membership.objects.filter(
        user_id=user.pk, is_active=True
    ).values_list("role", "reseller_id", "tenant_id", "tenant__reseller_id"):
        if role == Membership.Role.RESELLER_ADMIN:
            admin.add(reseller_id)
            manager.add(reseller_id)
        elif role == Membership.Role.RESELLER_OPERATOR:
            manager.add(reseller_id)
        elif role == Membership.Role.TENANT_VIEWER:
            viewer.add(tenant_id)
            viewer_resellers.add(tenants_reseller_id)
    result = Grants(frozenset(admin), frozenset(manager), frozenset(viewer), frozenset(viewer_resellers))
    setattr(user, _CACHE, result)
    return result


def forget(user: Principal) -> None:
    """Drop the cached grants after the user's memberships changed."""
    user.__dict__.pop(_CACHE, None)


def _label(model: type[Model]) -> str:
    return model._meta.label_lower


def _django_perm(user: Principal, action: str, model: type[Model]) -> bool:
    return user.has_perm(f"{model._meta.app_label}.{action}_{model._meta.model_name}")


def _is_platform(user: Principal) -> bool:
    return user.is_active and (user.is_superuser or user.is_staff)


def has_portal_access(user: Principal) -> bool:
    """May this user sign in to the portal at all?"""
    return _signed_in(user) and (_is_platform(user) or grants(user).any)


def may_sign_in(user: Principal) -> bool:
    """May this login sign in: anyone with portal access, and anyone with an invitation to answer, which is
    answered signed in as oneself (tenants.views.invitation) — such a login reaches nothing else until it accepts."""
    if has_portal_access(user):
        return True
    return (
        _signed_in(user)
        and Membership.objects.filter(user_id=user.pk, invitation=Membership.Invitation.PENDING).exists()
    )


def must_use_two_factor(user: Principal) -> bool:
    """Must this person sign in with a second factor? Reseller admins (they manage people, keys and prices) and
    platform staff; everyone else may choose to."""
    return _signed_in(user) and (_is_platform(user) or bool(grants(user).admin_resellers))


def is_reviewer(user: Principal) -> bool:
    """Platform staff who work the sender-ID registration queue."""
    return _is_platform(user) and user.has_perm(REVIEW_PERMISSION)


def _as_queryset(model_or_qs: type[M] | QuerySet[M]) -> QuerySet[M]:
    return model_or_qs if isinstance(model_or_qs, QuerySet) else model_or_qs._default_manager.all()


def _scope(
    rule: Rule, *, resellers: frozenset[int], tenants: frozenset[int] = frozenset(), user: Principal | None = None
) -> Q | None:
    """The rows of a rule owned by these resellers, these tenants or this person; None when none can be."""
    parts = [Q(**{f"{path}__in": resellers}) for path in rule.reseller_paths if resellers]
    if rule.tenant_path and tenants:
        parts.append(Q(**{f"{rule.tenant_path}__in": tenants}))
    if rule.user_path and user is not None:
        parts.append(Q(**{rule.user_path: user}))
    return reduce(operator.or_, parts) if parts else None


def _read_scope(user: Principal, rule: Rule) -> Q | None:
    g = grants(user)
    return _scope(rule, resellers=g.resellers(rule.readers), tenants=g.viewer_tenants, user=user)


def _write_scope(user: Principal, rule: Rule) -> Q | None:
    if rule.writers == "nobody":
        return None
    if rule.writers == "owner":
        return _scope(rule, resellers=frozenset(), user=user) if grants(user).any else None
    if rule.writers == "owner_or_admins":
        return _scope(rule, resellers=grants(user).admin_resellers, user=user) if grants(user).any else None
    return _scope(rule, resellers=grants(user).resellers(rule.writers))


def visible(user: Principal, model_or_qs: type[M] | QuerySet[M]) -> QuerySet[M]:
    """The rows of this model (or queryset) the user may see."""
    qs = _as_queryset(model_or_qs)
    model, label = qs.model, _label(qs.model)
    if not _signed_in(user):
        return qs.none()
    if user.is_superuser:
        return qs
    if user.is_staff:
        return qs if _django_perm(user, "view", model) or _django_perm(user, "change", model) else qs.none()
    if label in PUBLIC_READ:
        return qs if grants(user).any else qs.none()
    rule = RULES.get(label)
    scope = _read_scope(user, rule) if rule else None  # a model nobody declared: the platform's alone
    return qs.filter(scope) if scope is not None else qs.none()


def changeable(user: Principal, model_or_qs: type[M] | QuerySet[M]) -> QuerySet[M]:
    """The rows of this model (or queryset) the user may change."""
    qs = _as_queryset(model_or_qs)
    model, label = qs.model, _label(qs.model)
    if not _signed_in(user):
        return qs.none()
    if user.is_superuser:
        return qs
    if user.is_staff:
        return qs if _django_perm(user, "change", model) else qs.none()
    rule = RULES.get(label)
    scope = _write_scope(user, rule) if rule else None
    return qs.filter(scope) if scope is not None else qs.none()


def can(user: Principal, action: Action, model_or_obj: Model | type[Model]) -> bool:
    """May the user do this action to this row, or (given a model class) to some row of this model?"""
    if isinstance(model_or_obj, Model):
        obj, model = model_or_obj, type(model_or_obj)
    else:
        obj, model = None, model_or_obj
    if not has_portal_access(user):
        return False
    if user.is_superuser:
        return True
    if user.is_staff:
        allowed = _django_perm(user, action, model) or (action == "view" and _django_perm(user, "change", model))
        return allowed and (obj is None or action == "add" or visible(user, model).filter(pk=obj.pk).exists())
    label = _label(model)
    rule = RULES.get(label)
    if action == "view":
        if label not in PUBLIC_READ and (rule is None or _read_scope(user, rule) is None):
            return False
        return obj is None or visible(user, model).filter(pk=obj.pk).exists()
    if rule is None or action not in rule.actions or _write_scope(user, rule) is None:
        return False
    if obj is None or action == "add":
        return True
    return changeable(user, model).filter(pk=obj.pk).exists()


def may_browse(user: Principal, model: type[Model]) -> bool:
    """May this user open this model's pages in the admin (its list, its rows)? Those who may view its rows, except
    that a tenant viewer (with no reseller role) never opens the plumbing's pages."""
    if not can(user, "view", model):
        return False
    if _label(model) not in PLUMBING or _is_platform(user):
        return True
    return bool(grants(user).manager_resellers)


def _owning_resellers(obj: Model) -> set[int]:
    """The resellers a row belongs to, read off the row along its rule's reseller paths (no query when the
    related rows on the way are loaded)."""
    rule = RULES.get(_label(type(obj)))
    owners: set[int] = set()
    for path in rule.reseller_paths if rule else ():
        *hops, last = path.split("__")
        target: Any = obj  # walked hop by hop through related rows of any model
        for hop in hops:
            target = getattr(target, hop, None)
            if target is None:
                break
        else:
            owner = target.pk if last == "pk" else getattr(target, f"{last}_id", None)
            if owner is not None:
                owners.add(owner)
    return owners


def _manages_owner(user: Principal, obj: Model | None, token_tenant: Tenant | None) -> bool:
    """Is this user one of the managers (admins, operators) of the row's reseller — or, without a row, of any — or
    platform staff? Never through a tenant API token, which is the tenant's integration whoever created it."""
    if token_tenant is not None or not _signed_in(user):
        return False
    if _is_platform(user):
        return True
    managed = grants(user).manager_resellers
    if obj is None:
        return bool(managed)
    return bool(_owning_resellers(obj) & managed)


def may_see_webhook_urls(user: Principal, obj: Model | None = None, *, token_tenant: Tenant | None = None) -> bool:
    """May this user see the portal's webhook URLs of this row (a Wavix account's, or the relay URL of one of its
    numbers) — or, without a row, of any row at all?

    Whoever holds such a URL can post forged texts and delivery reports into every tenant of the account, and one
    reseller account serves many tenants. So: the managers (admins, operators) of the row's reseller, platform staff
    and superusers. Never a tenant viewer, and never a tenant API token (`token_tenant`, see
    tenants.authentication.token_tenant) even though a reseller admin created it: it is the tenant's integration.
    Everyone else sees such URLs masked (messaging.models.masked_url) or not at all.
    """
    return _manages_owner(user, obj, token_tenant)


def may_see_costs(user: Principal, tenant: Tenant | None = None, *, token_tenant: Tenant | None = None) -> bool:
    """May this user see what Wavix charged for a tenant's texts, and the reseller's price terms (its margin)?

    They are the reseller's business, not its customer's: the managers of the tenant's reseller and platform staff
    see them; a tenant viewer and a tenant API token see the price they are billed, never the cost under it.
    Without a tenant (a column over many tenants' rows): only someone who manages every tenant they can see — a
    reseller's admin who is also a viewer of another reseller's customer sees no costs in such lists.
    """
    if tenant is None and token_tenant is None and _signed_in(user) and not _is_platform(user):
        mine = grants(user)
        if mine.viewer_resellers - mine.manager_resellers:
            return False
    return _manages_owner(user, tenant, token_tenant)


def only_tenant(model_or_qs: type[M] | QuerySet[M], tenant: Tenant) -> QuerySet[M]:
    """Narrow rows to one tenant (a tenant API token's whole world); rows of no tenant are not in it."""
    qs = _as_queryset(model_or_qs)
    label = _label(qs.model)
    if label == "tenants.tenant":
        return qs.filter(pk=tenant.pk)
    rule = RULES.get(label)
    if label in PUBLIC_READ:
        return qs
    if rule is None or not rule.tenant_path:
        return qs.none()
    return qs.filter(**{rule.tenant_path: tenant})


def resellers_for(user: Principal, action: Action = "view") -> QuerySet[Reseller]:
    """Resellers the user may see (view) or create and change rows under (add/change/delete)."""
    if action == "view":
        return visible(user, Reseller)
    if not has_portal_access(user):
        return Reseller.objects.none()
    if user.is_superuser or (user.is_staff and _django_perm(user, "change", Tenant)):
        return Reseller.objects.all()
    return Reseller.objects.filter(pk__in=grants(user).manager_resellers)


def tenants_for(user: Principal, action: Action = "view") -> QuerySet[Tenant]:
    """Tenants the user may see (view) or manage (add/change/delete rows of)."""
    return visible(user, Tenant) if action == "view" else changeable(user, Tenant)


def people_resellers(user: Principal) -> QuerySet[Reseller]:
    """Resellers whose people (memberships of the reseller and its tenants) this user manages."""
    if not has_portal_access(user):
        return Reseller.objects.none()
    if user.is_superuser or (user.is_staff and _django_perm(user, "change", Membership)):
        return Reseller.objects.all()
    return Reseller.objects.filter(pk__in=grants(user).admin_resellers)
