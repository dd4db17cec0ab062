from django.apps import AppConfig


class SandboxConfig(AppConfig):
    name = "sandbox"
    verbose_name = "Sandbox (simulated Wavix and 3CX)"

    def ready(self) -> None:
        from sandbox import tasks  # noqa: F401 - attaches dispatch.SANDBOX_REPLY to its task
