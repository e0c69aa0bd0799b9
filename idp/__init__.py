"""Embedded development OpenID Connect provider (django-oauth-toolkit), run with `idp.settings`."""
