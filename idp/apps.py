from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class IdpConfig(AppConfig):
    name = "idp"
    label = "idp"
    verbose_name = _("Embedded development provider")
    default_auto_field = "django.db.models.BigAutoField"
