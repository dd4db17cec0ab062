"""What tenants announces to the apps built on it; tenants itself imports none of them."""

from django.dispatch import Signal

# A suspended tenant was made active again (tenants.services.tenant_save), inside that save's transaction; sent
# with tenant=. messaging releases the tenant's held inbound texts on it (services/inbound.py).
tenant_resumed = Signal()
