"""Standard OIDC claims for the provider's users."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from oauth2_provider.oauth2_validators import OAuth2Validator
from oauthlib.common import Request


class IdpOAuth2Validator(OAuth2Validator):
    # Which scope releases each claim (OIDC Core 5.4); `sub` is always released.
    oidc_claim_scope = {
        **OAuth2Validator.oidc_claim_scope,
        "name": "profile",
        "given_name": "profile",
        "family_name": "profile",
        "preferred_username": "profile",
        "email": "email",
        "email_verified": "email",
    }

    # The request-agnostic form (no `request` argument, values are callables) lets DOT list the
    # claims in discovery's `claims_supported`. `sub` stays DOT's default, str(user.pk).
    def get_additional_claims(self) -> dict[str, Callable[[Request], Any]]:
        return {
            "name": lambda r: r.user.get_full_name() or r.user.get_username(),
            "given_name": lambda r: r.user.first_name,
            "family_name": lambda r: r.user.last_name,
            "preferred_username": lambda r: r.user.get_username(),
            "email": lambda r: r.user.email,
            # Addresses are set by whoever administers this development provider, not by users.
            "email_verified": lambda r: bool(r.user.email),
        }
