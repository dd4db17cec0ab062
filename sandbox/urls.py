from django.urls import path

from sandbox import api, views

app_name = "sandbox"

urlpatterns = [
    path("", views.index, name="index"),
    # The simulated Wavix API, at Wavix's own paths (no trailing slash, as the SDK calls them).
    path("wavix/v1/profile", api.profile),
    path("wavix/v1/numbers", api.numbers),
    path("wavix/v1/numbers/<int:number_id>", api.number),
    path("wavix/v1/sub-organizations", api.sub_organizations),
    path("wavix/v3/messages/sender-ids", api.sender_ids),
    path("wavix/v3/messages/sender-ids/<str:uid>", api.sender_id),
    path("wavix/v3/messages", api.messages),
    path("wavix/_inject", api.inject, name="inject-api"),
    # Playing Wavix staff, faults, and inbound texts.
    path("accounts/", views.account_create, name="account-create"),
    path("accounts/<int:account_id>/outage/", views.account_outage, name="account-outage"),
    path("numbers/", views.number_create, name="number-create"),
    path("numbers/<int:number_id>/relay/", views.number_relay, name="number-relay"),
    path("numbers/<int:number_id>/inject/", views.inject, name="inject"),
    path("sender-ids/<int:sender_id>/allowlist/", views.sender_allowlist, name="sender-allowlist"),
    # Fake 3CX inboxes.
    path("3cx/", views.inbox_create, name="inbox-create"),
    path("3cx/inboxes/<int:inbox_id>/mode/", views.inbox_mode, name="inbox-mode"),
    path("3cx/inboxes/<int:inbox_id>/settings/", views.inbox_settings, name="inbox-settings"),
    path("3cx/inboxes/<int:inbox_id>/send/", views.inbox_send, name="inbox-send"),
    path("3cx/<str:token>/", views.fake_3cx, name="fake-3cx"),
    path("3cx/<str:token>/send", views.fake_3cx_send, name="fake-3cx-send"),
]
