"""Messaging's pages in the admin, one module per reason to change:

- provisioning: country rules, Wavix accounts and their numbers;
- trunks: 3CX trunks, their forwarding health, held texts and replays (setup: the trunk's SMS setup wizard);
- relay: inbound relay drift and forwarding health panels, shared by trunks, numbers and tenants;
- senders: sender IDs, their per-country registrations and the reviewers' queue;
- records: messages (and the send page), webhook events, deliveries, opt-outs, the audit trail (logs: their lists'
  filters, search and CSV export);
- dashboard: the page resellers and tenant viewers land on (tenant_pages: a tenant's home and its conversations).

Importing a module registers its model admins with the site, so each is imported here by name; the site-level
pages (the review queue, the dashboard) are added to the site here, so the site imports nothing of messaging.
"""

from django.contrib import admin

from messaging.admin import (
    dashboard,
    navigation,
    onboarding,
    provisioning,
    records,
    senders,
    tenant_pages,
    trunks,
    usage,
)
from portal.admin import PortalAdminSite

__all__ = ["dashboard", "onboarding", "provisioning", "records", "senders", "tenant_pages", "trunks", "usage"]

site = admin.site
assert isinstance(site, PortalAdminSite)  # PortalAdminConfig.default_site: the site that takes site-level pages
site.add_urls(senders.review_urls)
site.add_urls(tenant_pages.urls)
site.add_urls(usage.urls)
site.add_urls(onboarding.urls)
site.set_dashboard(dashboard.dashboard_view)
site.set_navigation(navigation.sidebar)
