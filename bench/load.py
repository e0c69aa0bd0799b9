"""`make load`: many signed-in people using the site while their tokens expire every few seconds.

The site runs under gunicorn (4 workers) on PostgreSQL, the embedded provider issues short-lived tokens
(10 s by default), and each simulated user — a real HTTP client holding its own site session, signed in
through the provider's login and consent pages before the timed phase — loops for the run's duration: think,
then view the profile page, or perform the sensitive action (the page, and half the time the form POST).

Both pages show the session's token expiries and when the next refresh falls due (the site's refresh-ahead
rule), so every response tells the user whether its request caused a refresh and whether one was due. That
gives, without trusting the site's own refresh bookkeeping:

- errors and wrongful logouts (targets 0);
- refresh grants at the provider vs the refreshes users' requests caused: one per token expiry a request met,
  plus one per sensitive request (target equal), with "missed" (tokens due, not refreshed) and "premature"
  (refreshed before due) both 0;
- p50/p99 latency of requests that refreshed vs requests that did not.

Loopback only; bounded in time (the duration, plus 30 s per request at most) and in count (one request at a
time per user, at most one per think time).
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402
from tests.browser import Browser, forms  # noqa: E402
from tests.provider import EmbeddedProvider  # noqa: E402

REQUEST_TIMEOUT = 30.0
ACCESS_RE = re.compile(r'Access token expires</th><td><time datetime="([^"]+)"')
ID_RE = re.compile(r'ID token expires</th><td><time datetime="([^"]+)"')
DUE_RE = re.compile(r'Next refresh due</th><td><time datetime="([^"]+)"')


@dataclass
class Sample:
    kind: str  # "profile", "sensitive_get" or "sensitive_post"
    start: float  # wall clock (time.time()), comparable with the expiries the pages show
    end: float
    outcome: str = "ok"  # "ok", "error" or "logged_out"
    detail: str = ""
    refreshed: bool = False  # the page shows a token set this user had not seen before
    # Profile requests only, from the expiry shown by the previous page: refresh due before the request left,
    # or not even by the time its response came back (in between, either answer is right).
    due_at_start: bool = False
    due_at_end: bool = False
    expired_shown: bool = False  # the page showed tokens already expired when it arrived

    @property
    def seconds(self) -> float:
        return self.end - self.start


class SimulatedUser:
    def __init__(self, browser: Browser, site_url: str, rng: random.Random) -> None:
        self.browser = browser
        self.site_url = site_url
        self.rng = rng
        self.samples: list[Sample] = []
        self.access: str | None = None
        self.due: float | None = None
        self.signed_out = False
        self._sensitive_page: requests.Response | None = None

    # -- one exchange ------------------------------------------------------------------------------------------

    def _observe(self, sample: Sample, resp: requests.Response) -> None:
        access = ACCESS_RE.search(resp.text)
        if access is None:
            sample.outcome, sample.detail = "error", "page without token expiries"
            return
        id_match = ID_RE.search(resp.text)
        expiries = [datetime.fromisoformat(access.group(1)).timestamp()]
        if id_match:
            expiries.append(datetime.fromisoformat(id_match.group(1)).timestamp())
        if self.due is not None:
            sample.due_at_start = sample.start >= self.due
            sample.due_at_end = sample.end >= self.due
        sample.refreshed = access.group(1) != self.access
        sample.expired_shown = min(expiries) <= sample.end
        self.access = access.group(1)
        # The site says when it will refresh next (the product's rule, on its own settings).
        due = DUE_RE.search(resp.text)
        self.due = datetime.fromisoformat(due.group(1)).timestamp() if due else min(expiries)

    def get(self, path: str, kind: str) -> Sample:
        sample = Sample(kind, time.time(), 0.0)
        try:
            resp = self.browser.get(self.site_url + path, allow_redirects=False, timeout=REQUEST_TIMEOUT)
        except requests.RequestException as exc:
            sample.end, sample.outcome, sample.detail = time.time(), "error", type(exc).__name__
            return self._record(sample)
        sample.end = time.time()
        if resp.status_code == 302 and "/oauth/login/" in resp.headers.get("Location", ""):
            sample.outcome, sample.detail = "logged_out", f"{path} sent to sign-in"
        elif resp.status_code != 200:
            sample.outcome, sample.detail = "error", f"HTTP {resp.status_code}"
        else:
            self._observe(sample, resp)
            if kind == "sensitive_get":
                self._sensitive_page = resp
        return self._record(sample)

    def post_display_name(self) -> Sample:
        page = self._sensitive_page
        assert page is not None
        form = next((f for f in forms(page.text) if "display_name" in f.fields), None)
        sample = Sample("sensitive_post", time.time(), 0.0)
        if form is None:
            sample.end, sample.outcome, sample.detail = time.time(), "error", "no display-name form"
            return self._record(sample)
        data = {**form.fields, "display_name": f"Load {self.rng.randrange(10**6)}"}
        try:
            resp = self.browser.post(
                self.site_url + "/account/sensitive/", data=data, allow_redirects=False, timeout=REQUEST_TIMEOUT
            )
        except requests.RequestException as exc:
            sample.end, sample.outcome, sample.detail = time.time(), "error", type(exc).__name__
            return self._record(sample)
        sample.end = time.time()
        location = resp.headers.get("Location", "")
        if resp.status_code == 302 and "/oauth/login/" in location:
            sample.outcome, sample.detail = "logged_out", "sensitive POST sent to sign-in"
        elif resp.status_code != 302 or location != "/account/sensitive/":
            sample.outcome, sample.detail = "error", f"HTTP {resp.status_code} → {location or '-'}"
        else:
            sample.refreshed = True  # the decorator refreshed before saving (not visible on a redirect)
        return self._record(sample)

    def _record(self, sample: Sample) -> Sample:
        self.samples.append(sample)
        if sample.outcome == "logged_out":
            self.signed_out = True
        return sample

    # -- the loop ----------------------------------------------------------------------------------------------

    def run(self, deadline: float, think: tuple[float, float], sensitive_share: float) -> None:
        # Start spread over one think time, so the users do not march in step.
        time.sleep(self.rng.uniform(0, think[1]))
        while time.monotonic() < deadline and not self.signed_out:
            if self.rng.random() < sensitive_share:
                page = self.get("/account/sensitive/", "sensitive_get")
                if page.outcome == "ok" and self.rng.random() < 0.5 and time.monotonic() < deadline:
                    time.sleep(self.rng.uniform(0.2, 0.6))  # reads the form, types a name
                    if self.post_display_name().outcome == "ok":
                        self.get("/account/sensitive/", "sensitive_get")
            else:
                self.get("/account/", "profile")
            pause = self.rng.uniform(*think)
            if time.monotonic() + pause >= deadline:
                break
            time.sleep(pause)


# --- the report -----------------------------------------------------------------------------------------------


@dataclass
class LoadReport:
    users: int
    duration: float
    samples: list[Sample]
    provider_grants: int
    site_refreshes: int
    sessions_ended: int
    live_families: int
    sessions: int
    warmup_failures: int = 0
    notes: list[str] = field(default_factory=list)

    def of(self, kind: str, outcome: str | None = "ok") -> list[Sample]:
        return [s for s in self.samples if s.kind == kind and (outcome is None or s.outcome == outcome)]

    @property
    def errors(self) -> list[Sample]:
        return [s for s in self.samples if s.outcome == "error"]

    @property
    def logouts(self) -> list[Sample]:
        return [s for s in self.samples if s.outcome == "logged_out"]

    @property
    def profile_refreshes(self) -> int:
        return sum(s.refreshed for s in self.of("profile"))

    @property
    def expiries_met(self) -> int:
        """Token expiries that a profile request met: tokens due when it left, or due while it was in flight
        and refreshed then (a due moment in flight that the server did not see yet is met by the next one)."""
        return sum(s.due_at_start or (s.due_at_end and s.refreshed) for s in self.of("profile"))

    @property
    def missed(self) -> int:
        return sum(s.due_at_start and not s.refreshed for s in self.of("profile"))

    @property
    def premature(self) -> int:
        return sum(s.refreshed and not s.due_at_end for s in self.of("profile"))

    @property
    def sensitive_refreshes(self) -> int:
        # Each sensitive request refreshes exactly once (the middleware's refresh on expiry counts for it).
        return len(self.of("sensitive_get")) + len(self.of("sensitive_post"))

    @property
    def sensitive_without_refresh(self) -> int:
        return sum(not s.refreshed for s in self.of("sensitive_get"))

    @property
    def caused_refreshes(self) -> int:
        return self.profile_refreshes + self.sensitive_refreshes

    @property
    def expired_shown(self) -> int:
        return sum(s.expired_shown for s in self.samples if s.outcome == "ok")

    def targets_met(self) -> bool:
        return (
            not self.errors
            and not self.warmup_failures
            and not self.logouts
            and self.sessions_ended == 0
            and self.provider_grants == self.caused_refreshes == self.site_refreshes
            and self.missed == 0
            and self.premature == 0
            and self.sensitive_without_refresh == 0
            and self.expired_shown == 0
            and self.live_families == self.sessions
        )

    def format(self) -> str:
        n = len(self.samples)
        lines = [
            f"users {self.users}, timed phase {self.duration:.0f} s",
            f"requests                      {n} ({n / self.duration:.1f}/s): profile {len(self.of('profile', None))},"
            f" sensitive page {len(self.of('sensitive_get', None))}, sensitive POST"
            f" {len(self.of('sensitive_post', None))}",
            f"errors                        {len(self.errors)}  (target 0)"
            + (f"  {dict(Counter(s.detail for s in self.errors))}" if self.errors else ""),
            f"wrongful logouts              {len(self.logouts)}  (target 0); sessions ended at the site:"
            f" {self.sessions_ended}",
            f"refresh grants at provider    {self.provider_grants}",
            f"refreshes caused by requests  {self.caused_refreshes}  (target = grants) ="
            f" {self.profile_refreshes} on token expiry + {self.sensitive_refreshes} sensitive",
            f"  token expiries met          {self.expiries_met}  (target = {self.profile_refreshes} refreshes on"
            f" expiry); missed {self.missed}, premature {self.premature}  (targets 0)",
            f"  sensitive without refresh   {self.sensitive_without_refresh}  (target 0)",
            f"refreshes the site recorded   {self.site_refreshes}  (target = grants)",
            f"pages with expired tokens     {self.expired_shown}  (target 0)",
            f"live refresh-token families   {self.live_families} of {self.sessions} sessions  (target all)",
            "latency                       p50        p99        max        count",
        ]
        groups = [
            ("profile, no refresh", [s for s in self.of("profile") if not s.refreshed]),
            ("profile, refreshing", [s for s in self.of("profile") if s.refreshed]),
            ("sensitive page (refresh)", self.of("sensitive_get")),
            ("sensitive POST (refresh)", self.of("sensitive_post")),
        ]
        for label, group in groups:
            t = [s.seconds for s in group]
            lines.append(
                f"  {label:<27} {harness.ms(harness.percentile(t, 50)):<10} {harness.ms(harness.percentile(t, 99)):<10}"
                f" {harness.ms(max(t) if t else float('nan')):<10} {len(t)}"
            )
        lines += self.notes
        lines.append("TARGETS MET" if self.targets_met() else "TARGETS NOT MET")
        return "\n".join(lines)


def site_refresh_total() -> int:
    from django.db.models import Sum

    from oauth_client.models import OAuthSession

    return int(OAuthSession.objects.aggregate(n=Sum("refresh_count"))["n"] or 0)


def run_load(
    site_url: str,
    provider: EmbeddedProvider,
    browsers: list[Browser],
    *,
    duration: float,
    think: tuple[float, float] = (2.0, 4.0),
    sensitive_share: float = 0.2,
    seed: int = 1,
) -> LoadReport:
    """Run the timed phase with one simulated user per signed-in browser. Needs Django set up on the site's
    database (for the site's own refresh count)."""
    from django.utils import timezone

    from oauth_client.models import OAuthSession

    master = random.Random(seed)
    users = [SimulatedUser(b, site_url, random.Random(master.random())) for b in browsers]
    # Every user looks at its profile once, so it knows its tokens' expiries before the clock starts.
    for user in users:
        user.get("/account/", "warmup")
    warmup_failures = [s for u in users for s in u.samples if s.outcome != "ok"]
    for user in users:
        user.samples.clear()

    grants_before, site_before = provider.count_refresh_tokens(), site_refresh_total()
    started_at = timezone.now()
    start = time.monotonic()
    deadline = start + duration
    threads = [
        threading.Thread(target=u.run, args=(deadline, think, sensitive_share), daemon=True, name=f"user-{i}")
        for i, u in enumerate(users)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, deadline + REQUEST_TIMEOUT * 3 + 10 - time.monotonic()))
    elapsed = time.monotonic() - start
    stuck = sum(t.is_alive() for t in threads)

    report = LoadReport(
        users=len(users),
        duration=elapsed,
        samples=[s for u in users for s in u.samples],
        provider_grants=provider.count_refresh_tokens() - grants_before,
        site_refreshes=site_refresh_total() - site_before,
        sessions_ended=OAuthSession.objects.filter(ended_at__gte=started_at).count(),
        live_families=len(provider.active_refresh_tokens()),
        sessions=OAuthSession.objects.filter(ended_at__isnull=True).count(),
        warmup_failures=len(warmup_failures),
    )
    if warmup_failures:
        report.notes.append(f"warm-up failures: {len(warmup_failures)} {Counter(s.detail for s in warmup_failures)}")
    if stuck:
        report.notes.append(f"users still running at the end: {stuck}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of the timed phase")
    parser.add_argument("--accounts", type=int, default=20, help="provider accounts the users are spread over")
    parser.add_argument("--token-seconds", type=int, default=10, help="access and ID token lifetime")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers of the site")
    parser.add_argument("--think", default="3:7", help="think time between actions, MIN:MAX seconds")
    parser.add_argument("--sensitive", type=float, default=0.1, help="share of actions that are sensitive")
    args = parser.parse_args(argv)
    think = tuple(float(x) for x in args.think.split(":"))
    if len(think) != 2 or not 0 < think[0] <= think[1] or args.users < 1 or args.duration <= 0:
        parser.error("bad --think, --users or --duration")

    database_url = harness.bench_database_url()
    harness.ensure_database(database_url)
    database_url = harness.with_query(database_url, conn_max_age="60")
    with tempfile.TemporaryDirectory(prefix="oauth-load-") as tmp:
        print(f"provider: embedded, {args.token_seconds} s tokens; site: gunicorn ×{args.workers}, PostgreSQL")
        provider = harness.start_provider(Path(tmp), args.token_seconds)
        try:
            env = harness.site_environment(provider)
            harness.setup_django(database_url, env)
            accounts = harness.create_accounts(provider, min(args.accounts, args.users))
            with harness.gunicorn_site(database_url, env, workers=args.workers) as site_url:
                t0 = time.monotonic()
                browsers = harness.sign_in_many(site_url, accounts, args.users)
                print(f"signed in {len(browsers)} users in {time.monotonic() - t0:.0f} s; timed phase starts")
                report = run_load(
                    site_url,
                    provider,
                    browsers,
                    duration=args.duration,
                    think=(think[0], think[1]),
                    sensitive_share=args.sensitive,
                )
        finally:
            provider.stop()
    print(report.format())
    return 0 if report.targets_met() else 1


if __name__ == "__main__":
    sys.exit(main())
