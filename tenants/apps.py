from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Customers and people"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from tenants import two_factor

        user_logged_in.connect(two_factor.note_at_sign_in, dispatch_uid="tenants.two_factor")
