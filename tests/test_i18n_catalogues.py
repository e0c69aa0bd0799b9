"""The translation machinery: every string a person reads is marked, in every catalogue, translated and compiled.

The first tests check the project as committed (they are what fails when someone adds an unmarked or
untranslated string); the others show that the checker really catches each kind of mistake.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from babel.messages.pofile import read_po, write_po

from scripts import i18n

ROOT = i18n.ROOT


def report(problems: list[str]) -> str:
    return "\n" + "\n".join(problems) + "\n\nSee docs/i18n.md: `make messages`, translate, `make messages`."


def needs_gettext() -> None:
    missing = i18n.missing_gettext_tools()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have GNU gettext ({', '.join(missing)} missing): .ci/run installs it")
        pytest.skip(f"needs GNU gettext ({', '.join(missing)} missing): apt-get install gettext")


# -- the project as committed ------------------------------------------------------------------


def test_templates_mark_every_text_a_person_reads():
    assert not (problems := i18n.template_problems()), report(problems)


def test_python_code_gives_people_only_translated_strings():
    assert not (problems := i18n.python_problems()), report(problems)


def test_every_catalogue_entry_is_translated_and_not_fuzzy():
    assert not (problems := i18n.catalogue_problems()), report(problems)


def test_compiled_catalogues_are_shipped_and_match_their_sources():
    assert not (problems := i18n.compiled_problems()), report(problems)


def test_catalogues_hold_exactly_the_strings_of_the_code():
    needs_gettext()
    assert not (problems := i18n.extraction_problems()), report(problems)


def test_french_catalogues_cover_both_languages_of_every_catalogue():
    for catalogue_dir in i18n.CATALOGUE_DIRS:
        ids = {locale: i18n.msgids(i18n.read_catalogue(i18n.po_path(catalogue_dir, locale))) for locale in i18n.LOCALES}
        assert ids["en"] == ids["fr_CA"], catalogue_dir
        assert len(ids["fr_CA"]) > 20, catalogue_dir


# -- the checker catches each kind of mistake -----------------------------------------------------


def test_template_checker_finds_unmarked_text():
    source = """{% load i18n %}<!doctype html><html lang="{{ LANGUAGE_CODE }}">
<head><title>{% translate "Home" %}</title><style>body { font: sans-serif; }</style></head>
<body>
<h1>Welcome back</h1>
{% blocktranslate with name=user %}Signed in as {{ name }}{% endblocktranslate %}
{% comment %}Notes for developers are not shown.{% endcomment %}
<p><code>offline_access</code> · {{ value }} — {{ when|date:"j F Y" }}</p>
<input type="submit" value="Send it"> <img src="x.png" alt="A diagram">
<option value="{{ code }}"{% if selected %} selected{% endif %}>{{ name }}</option>
<p>{{ note|default:"Nothing yet" }} {{ other|default:_("Fine") }}</p>
<p>Brand name</p>{# i18n: ignore #}
</body></html>"""
    found = i18n.template_text_problems(source)
    assert found == [(4, "Welcome back"), (8, "A diagram"), (8, "Send it"), (10, "Nothing yet")]


def test_python_checker_finds_strings_given_to_people():
    source = """
from django.contrib import messages
from django.db import models
from django.utils.translation import gettext as _

class Reason(models.TextChoices):
    GOOD = "good", _("Good")
    BAD = "bad", "Bad"
    UGLY = "ugly"

class Thing(models.Model):
    name = models.CharField("name", max_length=10)
    note = models.CharField(_("note"), help_text="Shown under the field", max_length=10)

class ByReason(admin.SimpleListFilter):
    title = "reason"
    parameter_name = "reason"

@admin.display(description="Ended?")
def ended(obj): ...

def view(request):
    messages.success(request, "Saved.")
    messages.info(request, _("Saved."))
    messages.warning(request, f"Ended {3} sessions")
    logger.info("logs are for developers")
    raise UserRejected("Go away")

def brand():
    return error_response(request, title="OIDC", message=_("fine"))  # i18n: ignore
"""
    found = [line for line, _ in i18n.python_text_problems(source)]
    assert found == [8, 9, 12, 13, 16, 19, 23, 25, 27]


def scratch_copy(tmp_path: Path) -> Path:
    """The project's sources and catalogues, where the tests below may break things."""
    copy = tmp_path / "src"
    shutil.copytree(
        ROOT,
        copy,
        ignore=lambda d, names: {n for n in names if n in i18n.IGNORED_DIRS - {"migrations"} or n.endswith(".sqlite3")},
    )
    return copy


def test_checker_finds_a_new_string_missing_from_the_catalogues(tmp_path):
    needs_gettext()
    copy = scratch_copy(tmp_path)
    home = copy / "templates" / "accounts" / "home.html"
    home.write_text(home.read_text().replace('{% translate "Welcome" %}', '{% translate "Welcome aboard" %}'))
    problems = i18n.extraction_problems(copy)
    assert "locale/fr_CA/LC_MESSAGES/django.po: lacks 'Welcome aboard' (run `make messages`, then translate)" in (
        problems
    )
    assert any("keeps 'Welcome', no longer in the code" in p for p in problems)
    # The documented fix: extract, translate, compile, and the checker is satisfied.
    i18n.extract(copy)
    po = i18n.po_path("locale", "fr_CA", copy)
    # msgmerge offers the old translation as a fuzzy guess: still not good enough to ship.
    assert "'Welcome aboard'" in "\n".join(i18n.catalogue_problems(copy))
    with po.open("rb") as f:
        catalog = read_po(f)
    catalog["Welcome aboard"].string = "Bienvenue à bord"
    catalog["Welcome aboard"].flags.discard("fuzzy")
    with po.open("wb") as f:
        write_po(f, catalog)
    i18n.compile_catalogues(copy)
    assert i18n.extraction_problems(copy) == []
    assert i18n.catalogue_problems(copy) == [] and i18n.compiled_problems(copy) == []


def test_checker_finds_fuzzy_untranslated_broken_and_stale_entries(tmp_path):
    copy = scratch_copy(tmp_path)
    po = i18n.po_path("idp/locale", "fr_CA", copy)
    text = po.read_text()
    text = text.replace('msgstr "Refuser"', 'msgstr ""')
    text = text.replace('msgid "Allow"\n', '#, fuzzy\nmsgid "Allow"\n')
    text = text.replace('msgstr "Autoriser %(name)s à accéder à votre compte?"', 'msgstr "Autoriser %(nom)s?"')
    po.write_text(text)
    problems = "\n".join(i18n.catalogue_problems(copy) + i18n.compiled_problems(copy))
    assert "untranslated 'Deny'" in problems
    assert "fuzzy entry 'Allow'" in problems
    assert "placeholders differ in 'Allow %(name)s to access your account?'" in problems
    assert "idp/locale/fr_CA/LC_MESSAGES/django.mo: out of date" in problems
    (po.with_suffix(".mo")).unlink()
    assert "django.mo: missing" in "\n".join(i18n.compiled_problems(copy))


def test_compiled_catalogue_leaves_untranslated_entries_out(tmp_path):
    copy = scratch_copy(tmp_path)
    po = i18n.po_path("locale", "fr_CA", copy)
    po.write_text(po.read_text().replace('msgstr "Bienvenue"', 'msgstr ""'))
    i18n.compile_catalogues(copy)
    import gettext

    with po.with_suffix(".mo").open("rb") as f:
        compiled = gettext.GNUTranslations(f)
    assert compiled.gettext("Welcome") == "Welcome"  # falls back to English, never to an empty string
    assert compiled.gettext("Sign in") == "Se connecter"


def test_every_french_entry_keeps_its_placeholders():
    for _, locale, path in i18n.po_files():
        with path.open("rb") as f:
            for message in read_po(f):
                if message.id and "%(" in str(message.id):
                    assert i18n.placeholders(str(message.string)) == i18n.placeholders(str(message.id)) or (
                        locale == "en"
                        and not any(message.string if isinstance(message.string, tuple) else [message.string])
                    ), (path, message.id)


def test_plural_entries_may_leave_the_count_out_of_a_form_but_not_rename_it():
    from babel.messages.catalog import Message

    def check(*forms: str) -> list[str]:
        message = Message(("%(num)d session", "%(num)d sessions"), forms, flags=["python-format"])
        return i18n.entry_problems(message, "fr_CA")

    assert check("une session", "%(num)d sessions") == []
    assert check("%(num)d session", "%(num)d sessions") == []
    assert check("%(n)d session", "%(num)d sessions")
    assert check("%(num)d session", "des sessions")
    assert check("%(num)d session", "")  # untranslated
