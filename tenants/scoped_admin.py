"""Tenant-scoped admin base classes: every model admin's rows, choices and permissions come from tenants.access,
and a service's ValidationError lands on the admin form that called it."""

from django import forms
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.http import Http404
from unfold.admin import ModelAdmin, TabularInline

from tenants import access


def show_errors(form: forms.Form, error: ValidationError, renamed: dict[str, str] | None = None) -> None:
    """Put a service's ValidationError on the form: each message beside its field (`renamed` maps a service's
    field name to the form's), the rest above the form."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error.messages)
        return
    for name, messages in error.message_dict.items():
        name = (renamed or {}).get(name, name)
        form.add_error(name if name in form.fields else None, messages)


class ScopedAdmin(ModelAdmin):
    """A model admin whose rows, choices and permissions all come from tenants.access.

    Another reseller's object opened by URL answers 404, exactly like one that does not exist.
    """

    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def get_queryset(self, request):
        return access.visible(request.user, super().get_queryset(request))

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []  # inlines here show existing rows only

    def get_object(self, request, object_id, from_field=None):
        if access.can(request.user, "view", self.model) and not access.may_browse(request.user, self.model):
            raise PermissionDenied  # rows they may read but not browse (the plumbing): 403 for every id alike
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404("No such object.")
        return obj

    def has_module_permission(self, request) -> bool:
        return access.may_browse(request.user, self.model)

    def has_view_permission(self, request, obj=None) -> bool:
        if not access.may_browse(request.user, self.model):
            return False
        return obj is None or access.can(request.user, "view", obj)

    def has_add_permission(self, request) -> bool:
        return access.can(request.user, "add", self.model)

    def has_change_permission(self, request, obj=None) -> bool:
        return access.can(request.user, "change", obj if obj is not None else self.model)

    def has_delete_permission(self, request, obj=None) -> bool:
        return access.can(request.user, "delete", obj if obj is not None else self.model)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        # Choices list only rows the user may attach things to: a typed-in foreign id fails validation.
        related = db_field.remote_field.model
        if "queryset" not in kwargs:
            kwargs["queryset"] = access.changeable(request.user, related)
            if related._meta.label_lower in access.PUBLIC_READ:
                kwargs["queryset"] = access.visible(request.user, related)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ScopedReadOnlyInline(TabularInline):
    """An inline of records that are shown, never edited, in the parent's page."""

    extra = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request):
        return access.visible(request.user, super().get_queryset(request))

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_view_permission(self, request, obj=None) -> bool:
        return access.can(request.user, "view", self.model)
