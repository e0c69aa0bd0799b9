from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OAuthClientConfig(AppConfig):
    name = "oauth_client"
    verbose_name = _("OpenID Connect sessions")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from oauth_client import checks, receivers  # noqa: F401 - registers checks and signal receivers
