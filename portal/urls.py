from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from messaging import api as messaging_api
from messaging import views as messaging_views
from portal.views import healthz
from tenants import api as tenants_api
from tenants import views as tenants_views

router = DefaultRouter()
router.register("tenants", tenants_api.TenantViewSet, basename="tenant")
router.register("people", tenants_api.PersonViewSet, basename="person")
router.register("wavix-accounts", messaging_api.WavixAccountViewSet, basename="wavixaccount")
router.register("numbers", messaging_api.PhoneNumberViewSet, basename="phonenumber")
router.register("trunks", messaging_api.TrunkViewSet, basename="trunk")
router.register("sender-ids", messaging_api.SenderIDViewSet, basename="senderid")
router.register("messages", messaging_api.MessageViewSet, basename="message")
router.register("countries", messaging_api.CountryRuleViewSet, basename="countryrule")

# The password-reset pages live outside the admin, so its each_context does not name the portal on them: they are
# given the name here, and the reset e-mail names it instead of the host it was asked on.
PORTAL_NAME = {"site_header": admin.site.site_header, "site_title": admin.site.site_title}
password_reset = auth_views.PasswordResetView.as_view(
    extra_context=PORTAL_NAME, extra_email_context={"site_name": admin.site.site_header}
)

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("webhooks/wavix/<str:secret>/<str:kind>/", messaging_views.wavix_webhook, name="wavix-webhook"),
    path("3cx/<int:trunk_id>/messages", messaging_views.provider_messages, name="3cx-provider"),
    path("metrics", messaging_views.prometheus_metrics, name="metrics"),
    path("invitations/<str:token>/", tenants_views.invitation, name="invitation"),
    path("brand/<int:pk>/logo", tenants_views.brand_logo, name="brand_logo"),
    path("accounts/two-factor/", tenants_views.two_factor_setup, name="two_factor_setup"),
    path("accounts/two-factor/verify/", tenants_views.two_factor_verify, name="two_factor_verify"),
    path("admin/password_reset/", password_reset, name="admin_password_reset"),
    path("accounts/password_reset/", password_reset, name="password_reset"),
    path(
        "accounts/password_reset/done/",
        auth_views.PasswordResetDoneView.as_view(extra_context=PORTAL_NAME),
        name="password_reset_done",
    ),
    path(
        "accounts/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(extra_context=PORTAL_NAME),
        name="password_reset_confirm",
    ),
    path(
        "accounts/reset/done/",
        auth_views.PasswordResetCompleteView.as_view(extra_context=PORTAL_NAME),
        name="password_reset_complete",
    ),
    path("accounts/", include("django.contrib.auth.urls")),  # the rest: sign-in, sign-out, password change
    # The audit trail moved from messaging to tenants (issue 15): old bookmarks still land on it.
    re_path(
        r"^admin/messaging/auditevent/(?P<rest>.*)$",
        RedirectView.as_view(url="/admin/tenants/auditevent/%(rest)s", query_string=True, permanent=True),
    ),
    path("admin/", admin.site.urls),
    path("api/v1/usage/", messaging_api.UsageView.as_view(), name="api-usage"),
    path("api/v1/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]

if settings.SANDBOX_ENABLED:
    urlpatterns.append(path("sandbox/", include("sandbox.urls")))

# Error pages in the portal's look (portal.views).
handler403 = "portal.views.permission_denied"
handler404 = "portal.views.page_not_found"
