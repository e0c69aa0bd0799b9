"""A real browser through a whole session: Chromium (Debian's package), driven by Playwright, against the site
in a live server and the embedded provider, with 5-second tokens so that "later" takes seconds.

Sign in through the provider's login and consent pages, see the profile, wait for the tokens to expire,
reload and still be signed in with new expiries, perform the sensitive action, sign out, and find the provider
asking for the password again. Screenshots of each step go to tests/artifacts/browser/ (ignored by git);
with UPDATE_DOC_SCREENSHOTS=1 the three shown in the README are copied to docs/screenshots/.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from datetime import datetime
from pathlib import Path

import pytest
from django.core.cache import cache

from tests.conftest import Site, client_settings, repo_root
from tests.provider import short_lived

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = repo_root() / "tests" / "artifacts" / "browser"
DOC_SCREENSHOTS = repo_root() / "docs" / "screenshots"
# Step screenshot → the name it has in the README tour.
DOC_SHOTS = {
    "03-provider-consent": "provider-consent.png",
    "04-profile": "profile.png",
    "05-profile-after-refresh": "profile-after-refresh.png",
}
TOKEN_SECONDS = 5

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)"
    ),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright for Python (pip install playwright)")
expect = sync_api.expect


@pytest.fixture(scope="module")
def short_lived_provider(tmp_path_factory: pytest.TempPathFactory):
    p = short_lived(tmp_path_factory.mktemp("idp-browser"), TOKEN_SECONDS)
    yield p
    p.stop()


@pytest.fixture
def browser_site(live_server, short_lived_provider, settings) -> Site:  # type: ignore[no-untyped-def]
    # Product defaults: with 5-second tokens the refresh falls due 1.25 s before expiry, not on every request.
    settings.OAUTH_CLIENT = client_settings(short_lived_provider)
    cache.clear()
    return Site(url=live_server.url, provider=short_lived_provider)


@pytest.fixture
def page(monkeypatch):
    # Playwright's sync API keeps an event loop on this thread; the test's own database reads are synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1000, "height": 760}, locale="en-US")
        page = context.new_page()
        page.set_default_timeout(30_000)
        try:
            yield page
        finally:
            context.close()
            browser.close()


class Screenshots:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)

    def take(self, page, name: str) -> None:
        page.screenshot(path=str(self.directory / f"{name}.png"), full_page=True)

    def publish(self) -> None:
        """Copy the README's screenshots to docs/screenshots/ (on request: they are committed files)."""
        DOC_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for step, name in DOC_SHOTS.items():
            shutil.copyfile(self.directory / f"{step}.png", DOC_SCREENSHOTS / name)


def token_time(page, row: str) -> datetime:
    value = page.locator("tr", has_text=row).locator("time").first.get_attribute("datetime")
    assert value, f"no time in the {row!r} row"
    return datetime.fromisoformat(value)


def sleep_until(moment: datetime) -> None:
    delay = moment.timestamp() - time.time()
    assert delay < 60, f"would wait {delay:.0f} s"
    if delay > 0:
        time.sleep(delay)


def test_a_person_signs_in_stays_signed_in_and_signs_out(browser_site, page):
    site, provider = browser_site.url, browser_site.provider
    shots = Screenshots(ARTIFACTS)

    # Signed out: the home page offers to sign in.
    page.goto(site + "/")
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    shots.take(page, "01-home")

    # The provider's own login page, then its consent page.
    page.get_by_role("main").get_by_role("link", name="Sign in").click()
    page.wait_for_url(re.compile(re.escape(provider.base_url) + r"/accounts/login/"))
    shots.take(page, "02-provider-login")
    page.get_by_label("Username").fill(provider.username)
    page.get_by_label("Password").fill(provider.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Allow Demo site to access your account?")).to_be_visible()
    expect(page.get_by_text("Keep you signed in when you are not using the application")).to_be_visible()
    shots.take(page, "03-provider-consent")
    page.get_by_role("button", name="Allow").click()

    # Back on the site, signed in: the profile with the ID token's claims and the tokens' expiries.
    page.wait_for_url(site + "/account/")
    expect(page.get_by_role("heading", name="Profile of Demo User")).to_be_visible()
    expect(page.locator("#claims")).to_contain_text("demo@example.com")
    expect(page.locator("tr", has_text="Last refreshed")).to_contain_text("not yet")
    first_expiry = token_time(page, "Access token expires")
    shots.take(page, "04-profile")

    # Let the tokens expire, then reload: still signed in, with new tokens from one refresh grant.
    grants = provider.count_refresh_tokens()
    sleep_until(max(first_expiry, token_time(page, "ID token expires")))
    page.reload()
    expect(page.get_by_role("heading", name="Profile of Demo User")).to_be_visible()
    assert page.url == site + "/account/"
    second_expiry = token_time(page, "Access token expires")
    assert second_expiry > first_expiry
    # What the person reads changed too: the tokens were refreshed a moment ago.
    expect(page.locator("tr", has_text="Last refreshed")).not_to_contain_text("not yet")
    assert token_time(page, "Last refreshed") >= first_expiry  # refreshed after the old tokens expired
    assert provider.count_refresh_tokens() > grants
    shots.take(page, "05-profile-after-refresh")

    # The sensitive action: the provider re-checks the grant before the page and before saving.
    grants = provider.count_refresh_tokens()
    page.get_by_role("navigation").get_by_role("link", name="Sensitive action").click()
    expect(page.get_by_role("heading", name="Change your display name")).to_be_visible()
    page.get_by_label("Display name").fill("Dee Playwright")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".messages")).to_contain_text("Your display name was changed.")
    expect(page.get_by_label("Display name")).to_have_value("Dee Playwright")
    assert provider.count_refresh_tokens() >= grants + 2  # page, save (and the page again after saving)
    shots.take(page, "06-sensitive-action")

    # Sign out: the site ends its session, revokes the refresh token, and sends the browser to the provider's
    # end-session endpoint, which signs the person out there too and comes back to the home page.
    page.get_by_role("banner").get_by_role("button", name="Sign out").click()
    page.wait_for_url(site + "/")
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    assert provider.active_refresh_tokens() == []
    shots.take(page, "07-signed-out")

    # Signed out at the provider too: signing in again asks for the password; the profile needs a sign-in.
    page.get_by_role("main").get_by_role("link", name="Sign in").click()
    page.wait_for_url(re.compile(re.escape(provider.base_url) + r"/accounts/login/"))
    expect(page.get_by_label("Password")).to_be_visible()
    expect(page.get_by_text("Not signed in.")).to_be_visible()
    shots.take(page, "08-provider-asks-for-password")
    page.goto(site + "/account/")
    page.wait_for_url(re.compile(re.escape(provider.base_url) + r"/accounts/login/"))

    if os.environ.get("UPDATE_DOC_SCREENSHOTS") == "1":
        shots.publish()
