"""The provider registry's rules, without a network: which provider a token record belongs to (never another
issuer, never a guess between two clients of one issuer), bad settings, and linking identities on purpose."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model

from oauth_client import providers
from oauth_client.backends import OAuthBackend
from oauth_client.exceptions import ConfigurationError, ProviderNotConfigured
from oauth_client.models import OAuthIdentity

CORP = {"ISSUER": "https://corp.example/", "CLIENT_ID": "corp-site", "CLIENT_SECRET": "s1"}
PARTNER = {"ISSUER": "https://partner.example/", "CLIENT_ID": "partner-site", "CLIENT_SECRET": "s2"}


def record(provider: str, issuer: str) -> SimpleNamespace:
    return SimpleNamespace(provider=provider, issuer=issuer)


@pytest.fixture
def two(settings):
    settings.OAUTH_CLIENT = {"PROVIDERS": {"corp": CORP, "partner": PARTNER}}


def test_flat_settings_are_one_provider_named_default(settings):
    settings.OAUTH_CLIENT = {**CORP, "LABEL": "Corporate sign-in"}
    only = providers.get()
    assert list(providers.registry()) == ["default"] and only.name == "default"
    assert (only.ISSUER, only.CLIENT_ID, only.label) == (CORP["ISSUER"], "corp-site", "Corporate sign-in")
    assert only.CLOCK_LEEWAY == 60  # shared keys come from the top level
    assert not providers.several()


def test_a_record_belongs_to_its_named_provider_only_while_that_has_its_issuer(two, settings):
    assert providers.for_record(record("corp", "https://corp.example")).name == "corp"  # a trailing / aside
    # The name now points at another issuer: the tokens must never go there.
    settings.OAUTH_CLIENT = {"PROVIDERS": {"corp": PARTNER, "partner": CORP}}
    with pytest.raises(ProviderNotConfigured):
        providers.for_record(record("corp", CORP["ISSUER"]))


def test_a_renamed_provider_keeps_its_sessions_when_its_issuer_is_unambiguous(two):
    assert providers.for_record(record("default", PARTNER["ISSUER"])).name == "partner"
    # For the back-channel query (records already filtered by the token's issuer): renamed records count.
    assert providers.serves(providers.get("partner"), "default")


def test_no_guess_between_two_clients_of_one_issuer(settings):
    settings.OAUTH_CLIENT = {
        "PROVIDERS": {"staff": CORP, "customers": {**CORP, "CLIENT_ID": "customers-site"}},
    }
    with pytest.raises(ProviderNotConfigured):
        providers.for_record(record("removed", CORP["ISSUER"]))
    assert not providers.serves(providers.get("staff"), "removed")


@pytest.mark.parametrize(
    "value",
    [["corp"], {"Corp Name": CORP}, {"corp": "https://corp.example/"}, {"corp": {**CORP, "CLOCK_LEEWAY": 5}}],
    ids=["a list", "not a slug", "not a dict", "a shared key"],
)
def test_an_unusable_providers_setting_is_a_configuration_error(settings, value):
    settings.OAUTH_CLIENT = {"PROVIDERS": value}
    with pytest.raises(ConfigurationError):
        providers.registry()


@pytest.mark.django_db
def test_pages_still_render_with_an_unusable_providers_setting(settings, client):
    settings.OAUTH_CLIENT = {"PROVIDERS": {"Bad Name": CORP}}
    assert client.get("/").status_code == 200
    assert client.get("/admin/login/").status_code == 200
    assert client.get("/oauth/login/").status_code == 503  # sign-in unavailable, said plainly; not a 500


class StaffLinkingBackend(OAuthBackend):
    def link_user(self, issuer, subject, claims):  # type: ignore[no-untyped-def]
        if issuer == PARTNER["ISSUER"] and claims.get("email_verified"):
            return get_user_model().objects.filter(email=claims.get("email"), is_staff=True).first()
        return None


@pytest.mark.django_db
def test_identities_are_linked_only_by_the_explicit_hook_and_the_link_is_recorded():
    staff = get_user_model().objects.create_user("ana", email="ana@example.com", is_staff=True)
    claims = {"iss": PARTNER["ISSUER"], "sub": "p-1", "email": "ana@example.com", "email_verified": True}
    # The default backend never merges by email: a second identity is a second user.
    assert OAuthBackend().user_for_claims(claims) != staff
    OAuthIdentity.objects.all().delete()
    linked = StaffLinkingBackend().user_for_claims({**claims, "sub": "p-2"})
    assert linked == staff
    assert OAuthIdentity.objects.get(issuer=PARTNER["ISSUER"], subject="p-2").user == staff
    # Decided once: the recorded link finds the user even after the email changes at the provider.
    assert StaffLinkingBackend().user_for_claims({**claims, "sub": "p-2", "email": "other@example.com"}) == staff
