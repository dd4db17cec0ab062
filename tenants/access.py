"""Who may see and change which rows: the one place that decides.

The admin, the API, the pages and the tasks all ask here. Principals:

- superusers see and change everything;
- platform staff (``is_staff``) act platform-wide through Django model permissions, granted by group
  ("Platform reviewers" holds the sender-ID review permission);
- everyone else acts through active memberships: a reseller admin or operator manages every row of their
  reseller and its tenants (admins also manage people), a tenant viewer reads its own tenant's rows.

A row outside a user's scope simply does not exist for them: views answer 404, never 403 with details.
"""

from dataclasses import dataclass
from typing import Literal

from django.db.models import Model, Q, QuerySet

from tenants.models import Membership, Reseller, Tenant

Action = Literal["view", "add", "change", "delete"]
WRITE_ACTIONS = frozenset({"add", "change", "delete"})

REVIEW_PERMISSION = "messaging.review_senderid"


@dataclass(frozen=True)
class Rule:
    """How a model's rows reach their owners, and who may write them."""

    reseller_path: str | None  # lookup from the row to its reseller's id
    tenant_path: str | None  # lookup to its tenant; None = tenant viewers never see these rows
    writers: Literal["managers", "admins", "nobody"]  # managers = reseller admins and operators
    actions: frozenset[str] = WRITE_ACTIONS  # which writes the writers get


_MANAGED = "managers"
RULES: dict[str, Rule] = {
    "tenants.reseller": Rule("pk", None, "admins", frozenset({"change"})),
    "tenants.tenant": Rule("reseller", "pk", _MANAGED),
    # People are managed by reseller admins; deactivate instead of delete, so the audit trail keeps the row.
    "tenants.membership": Rule(None, None, "admins", frozenset({"add", "change"})),
    "messaging.wavixaccount": Rule("reseller", "tenant", _MANAGED),
    "messaging.phonenumber": Rule("account__reseller", "tenant", _MANAGED),
    "messaging.trunk": Rule("tenant__reseller", "tenant", _MANAGED),
    "messaging.senderid": Rule("tenant__reseller", "tenant", _MANAGED),
    # Registration status moves only through review (platform staff) and Wavix sync, never by a reseller.
    "messaging.senderidcountry": Rule("tenant__reseller", "tenant", "nobody"),
    "messaging.message": Rule("tenant__reseller", "tenant", "nobody"),
    "messaging.delivery": Rule("tenant__reseller", "tenant", "nobody"),
    # Raw bodies from a shared account may concern several tenants: resellers only.
    "messaging.webhookevent": Rule("account__reseller", None, "nobody"),
    "messaging.auditevent": Rule("reseller", "tenant", "nobody"),
}
# Reference data every signed-in member may read and only platform staff may edit.
PUBLIC_READ = frozenset({"messaging.countryrule"})


@dataclass(frozen=True)
class Grants:
    admin_resellers: frozenset[int]
    manager_resellers: frozenset[int]  # admin or operator
    viewer_tenants: frozenset[int]

    @property
    def any(self) -> bool:
        return bool(self.manager_resellers or self.viewer_tenants)


NO_GRANTS = Grants(frozenset(), frozenset(), frozenset())


def grants(user) -> Grants:
    """The user's active memberships, read once per user object (that is, once per request)."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return NO_GRANTS
    cached = getattr(user, "_portal_grants", None)
    if cached is not None:
        return cached
    admin, manager, viewer = set(), set(), set()
    for role, reseller_id, tenant_id in Membership.objects.filter(user=user, is_active=True).values_list(
        "role", "reseller_id", "tenant_id"
    ):
        if role == Membership.Role.RESELLER_ADMIN:
            admin.add(reseller_id)
            manager.add(reseller_id)
        elif role == Membership.Role.RESELLER_OPERATOR:
            manager.add(reseller_id)
        elif role == Membership.Role.TENANT_VIEWER:
            viewer.add(tenant_id)
    result = Grants(frozenset(admin), frozenset(manager), frozenset(viewer))
    user._portal_grants = result
    return result


def forget(user) -> None:
    """Drop the cached grants after the user's memberships changed."""
    user.__dict__.pop("_portal_grants", None)


def _label(model: type[Model]) -> str:
    return model._meta.label_lower


def _django_perm(user, action: str, model: type[Model]) -> bool:
    return user.has_perm(f"{model._meta.app_label}.{action}_{model._meta.model_name}")


def _is_platform(user) -> bool:
    return user.is_active and (user.is_superuser or user.is_staff)


def has_portal_access(user) -> bool:
    """May this user sign in to the portal at all?"""
    return getattr(user, "is_authenticated", False) and user.is_active and (_is_platform(user) or grants(user).any)


def is_reviewer(user) -> bool:
    """Platform staff who work the sender-ID registration queue."""
    return _is_platform(user) and user.has_perm(REVIEW_PERMISSION)


def _as_queryset(model_or_qs) -> QuerySet:
    return model_or_qs if isinstance(model_or_qs, QuerySet) else model_or_qs._default_manager.all()


def _membership_q(reseller_ids) -> Q:
    return Q(reseller_id__in=reseller_ids) | Q(tenant__reseller_id__in=reseller_ids)


def visible(user, model_or_qs) -> QuerySet:
    """The rows of this model (or queryset) the user may see."""
    qs = _as_queryset(model_or_qs)
    model, label = qs.model, _label(qs.model)
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return qs.none()
    if user.is_superuser:
        return qs
    if user.is_staff:
        ok = _django_perm(user, "view", model) or _django_perm(user, "change", model)
        return qs if ok else qs.none()
    g = grants(user)
    if label in PUBLIC_READ:
        return qs if g.any else qs.none()
    if label == "tenants.membership":
        return qs.filter(_membership_q(g.admin_resellers)) if g.admin_resellers else qs.none()
    if label == "tenants.apitoken":
        return qs.filter(user=user)
    rule = RULES.get(label)
    if rule is None:
        return qs.none()  # a model nobody declared is visible to nobody but the platform
    q = Q()
    matched = False
    if rule.reseller_path and g.manager_resellers:
        q |= Q(**{f"{rule.reseller_path}__in": g.manager_resellers})
        matched = True
    if rule.tenant_path and g.viewer_tenants:
        q |= Q(**{f"{rule.tenant_path}__in": g.viewer_tenants})
        matched = True
    return qs.filter(q) if matched else qs.none()


def changeable(user, model_or_qs) -> QuerySet:
    """The rows of this model (or queryset) the user may change."""
    qs = _as_queryset(model_or_qs)
    model, label = qs.model, _label(qs.model)
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return qs.none()
    if user.is_superuser:
        return qs
    if user.is_staff:
        return qs if _django_perm(user, "change", model) else qs.none()
    g = grants(user)
    if label == "tenants.apitoken":
        return qs.filter(user=user)  # revoking is the only change
    if label == "tenants.membership":
        return qs.filter(_membership_q(g.admin_resellers)) if g.admin_resellers else qs.none()
    rule = RULES.get(label)
    if rule is None or rule.writers == "nobody":
        return qs.none()
    resellers = g.admin_resellers if rule.writers == "admins" else g.manager_resellers
    if not resellers or not rule.reseller_path:
        return qs.none()
    return qs.filter(**{f"{rule.reseller_path}__in": resellers})


def can(user, action: Action, model_or_obj) -> bool:
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
        return _django_perm(user, action, model) and (
            obj is None or action == "add" or visible(user, model).filter(pk=obj.pk).exists()
        )
    label = _label(model)
    if action == "view":
        if not _viewable(user, label):
            return False
        return obj is None or visible(user, model).filter(pk=obj.pk).exists()
    if not _writable(user, action, label):
        return False
    if obj is None or action == "add":
        return True
    return changeable(user, model).filter(pk=obj.pk).exists()


def _viewable(user, label: str) -> bool:
    g = grants(user)
    if label == "tenants.membership":
        return bool(g.admin_resellers)
    if label == "tenants.apitoken" or label in PUBLIC_READ:
        return g.any
    rule = RULES.get(label)
    if rule is None:
        return False
    return bool((rule.reseller_path and g.manager_resellers) or (rule.tenant_path and g.viewer_tenants))


def _writable(user, action: str, label: str) -> bool:
    g = grants(user)
    if label == "tenants.apitoken":
        return g.any and action in ("add", "change")
    rule = RULES.get(label)
    if rule is None or rule.writers == "nobody" or action not in rule.actions:
        return False
    return bool(g.admin_resellers if rule.writers == "admins" else g.manager_resellers)


def resellers_for(user, action: Action = "view") -> QuerySet[Reseller]:
    """Resellers the user may see (view) or create and change rows under (add/change/delete)."""
    if action == "view":
        return visible(user, Reseller)
    if not has_portal_access(user):
        return Reseller.objects.none()
    if user.is_superuser or user.is_staff and _django_perm(user, "change", Tenant):
        return Reseller.objects.all()
    return Reseller.objects.filter(pk__in=grants(user).manager_resellers)


def tenants_for(user, action: Action = "view") -> QuerySet[Tenant]:
    """Tenants the user may see (view) or manage (add/change/delete rows of)."""
    return visible(user, Tenant) if action == "view" else changeable(user, Tenant)


def people_resellers(user) -> QuerySet[Reseller]:
    """Resellers whose people (memberships of the reseller and its tenants) this user manages."""
    if not has_portal_access(user):
        return Reseller.objects.none()
    if user.is_superuser or user.is_staff and _django_perm(user, "change", Membership):
        return Reseller.objects.all()
    return Reseller.objects.filter(pk__in=grants(user).admin_resellers)


def get_visible_or_404(user, model_or_qs, **lookup):
    """Fetch one row the user may see, or raise Http404 exactly as for a row that does not exist."""
    from django.shortcuts import get_object_or_404

    return get_object_or_404(visible(user, model_or_qs), **lookup)
