from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from oauth_client.admin import OAuthSessionInline, sessions_url


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    fieldsets = (
        *BaseUserAdmin.fieldsets,  # type: ignore[misc]
        (_("Site profile"), {"fields": ("display_name",)}),
        (_("Sign-in sessions"), {"fields": ("oauth_sessions",)}),
    )
    readonly_fields = ("oauth_sessions",)
    inlines = [OAuthSessionInline]

    @admin.display(description=_("OAuth sessions"))
    def oauth_sessions(self, obj: Any) -> SafeString | str:
        if obj is None or obj.pk is None:
            return "—"
        return format_html(
            '<a href="{}">{}</a>', sessions_url(obj), _("All sessions of this user, ended ones included")
        )
