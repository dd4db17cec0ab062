from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = "Messaging"

    def ready(self) -> None:
        # Receivers: messaging builds on tenants, and the setup wizard on the rest of messaging; the lower part
        # announces, the higher one listens (so neither imports the other back).
        from messaging import tasks  # noqa: F401 - attaches every dispatch.Job to its task
        from messaging.services import inbound, setup
        from messaging.signals import trunk_saved
        from tenants.signals import tenant_resumed

        tenant_resumed.connect(inbound.on_tenant_resumed, dispatch_uid="messaging.release-held-texts")
        trunk_saved.connect(setup.on_trunk_saved, dispatch_uid="messaging.setup-refresh")
