"""A `requests.Session` that behaves enough like a browser to drive the real sign-in pages: it follows
redirects, keeps cookies, reads HTML forms and submits them (hidden fields, CSRF token, chosen button)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin

import requests


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    buttons: dict[str, str] = field(default_factory=dict)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._current: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._current = Form(action=a.get("action", ""), method=a.get("method", "get").lower())
            self.forms.append(self._current)
        elif self._current is not None and tag in ("input", "button", "textarea", "select"):
            name = a.get("name")
            if not name:
                return
            kind = a.get("type", "submit" if tag == "button" else "text").lower()
            if kind == "submit":
                self._current.buttons[name] = a.get("value", "")
            elif kind in ("checkbox", "radio"):
                if "checked" in a:
                    self._current.fields[name] = a.get("value", "on")
            else:
                self._current.fields[name] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def forms(html: str) -> list[Form]:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms


class Browser(requests.Session):
    def __init__(self, language: str = "en") -> None:
        super().__init__()
        self.headers["Accept"] = "text/html,application/xhtml+xml"
        self.headers["Accept-Language"] = language

    def find_form(
        self, response: requests.Response, *, with_field: str | None = None, action: str | None = None
    ) -> Form:
        for form in forms(response.text):
            if with_field and with_field not in form.fields and with_field not in form.buttons:
                continue
            if action and action not in form.action:
                continue
            return form
        raise AssertionError(f"no form with {with_field or action!r} on {response.url}:\n{response.text[:2000]}")

    def submit(
        self,
        response: requests.Response,
        form: Form,
        data: dict[str, str] | None = None,
        button: str | None = None,
        **kwargs: object,
    ) -> requests.Response:
        payload = {**form.fields, **(data or {})}
        if button:
            payload[button] = form.buttons.get(button, "")
        url = urljoin(response.url, form.action or response.url)
        headers = {"Referer": response.url}
        if form.method == "post":
            return self.post(url, data=payload, headers=headers, **kwargs)  # type: ignore[arg-type]
        return self.get(url, params=payload, headers=headers, **kwargs)  # type: ignore[arg-type]

    def sign_in(
        self, site_url: str, username: str, password: str, next_url: str | None = None, provider: str | None = None
    ) -> requests.Response:
        """Home → /oauth/login/ (or /oauth/login/<provider>/) → provider login form → consent → callback → back on
        the site."""
        params = {"next": next_url} if next_url else None
        path = f"/oauth/login/{provider}/" if provider else "/oauth/login/"
        resp = self.get(f"{site_url}{path}", params=params)
        if "password" in {n for f in forms(resp.text) for n in f.fields}:
            form = self.find_form(resp, with_field="password")
            resp = self.submit(resp, form, {"username": username, "password": password})
        if "allow" in {n for f in forms(resp.text) for n in f.buttons}:
            resp = self.submit(resp, self.find_form(resp, with_field="allow"), button="allow")
        return resp
