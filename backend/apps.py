"""The project package as an app: its system checks (``backend.checks``)."""

from django.apps import AppConfig


class BackendConfig(AppConfig):
    name = "backend"
    verbose_name = "Pulse server"

    def ready(self) -> None:
        from backend import checks  # noqa: F401  (registers the deploy checks)
