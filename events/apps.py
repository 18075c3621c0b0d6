from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "events"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Event subclasses connect their own receivers in ``Event.__init_subclass__``
        # when ``events.models`` is imported; importing it here makes that happen at
        # start-up for every subclass defined so far.
        from events import models  # noqa: F401
