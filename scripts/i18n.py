"""The translation catalogues in one place: extract, compile, check. The workflow is in docs/i18n.md.

    python scripts/i18n.py extract   # manage.py makemessages for every catalogue (needs GNU gettext)
    python scripts/i18n.py compile   # .po -> .mo in pure Python (babel): no system package needed
    python scripts/i18n.py check     # list everything below that is wrong; exit status 1 if anything is

Three catalogues, each `<dir>/<locale>/LC_MESSAGES/django.po`: the site's (locale/: templates/, accounts/,
project/), the reusable app's (oauth_client/locale/, shipped in its package) and the embedded provider's
(idp/locale/). makemessages files each string under the nearest enclosing directory with a `locale/` folder.

`check` fails when
- a catalogue entry is fuzzy, untranslated (any locale but the source, English) or drops/adds a placeholder;
- a compiled .mo is missing or says something else than its .po;
- the code has strings marked for translation that a catalogue lacks, or a catalogue keeps strings the code no
  longer has (needs xgettext; skipped without it unless CI is set);
- a template shows text outside {% translate %}/{% blocktranslate %}, or Python code gives a person a string
  literal without gettext (messages, exceptions shown to users, labels, admin descriptions; see
  python_problems). A line (Python) or template line with the comment `i18n: ignore` is not checked.
"""

from __future__ import annotations

import ast
import gettext
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
SOURCE_LOCALE = "en"
LOCALES = ["en", "fr_CA"]
CATALOGUE_DIRS = ["locale", "oauth_client/locale", "idp/locale"]
DOMAIN = "django"
# Not part of what a person reads, or not ours.
IGNORED_DIRS = {
    ".git",
    ".venv",
    "venv",
    "node_modules",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".run",
    "build",
    "dist",
    "staticfiles",
    "tests",
    "docs",
    "scripts",
    "bench",
    "migrations",
}
GETTEXT_TOOLS = ("xgettext", "msgmerge", "msguniq")
IGNORE_MARK = "i18n: ignore"

Key = tuple[str | None, Any]  # (context, msgid); msgid is a (singular, plural) tuple for plural entries


# -- catalogues ---------------------------------------------------------------------------------


def po_path(catalogue_dir: str, locale: str, root: Path = ROOT) -> Path:
    return root / catalogue_dir / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


def po_files(root: Path = ROOT) -> Iterator[tuple[str, str, Path]]:
    for catalogue_dir in CATALOGUE_DIRS:
        for locale in LOCALES:
            yield catalogue_dir, locale, po_path(catalogue_dir, locale, root)


def read_catalogue(path: Path) -> Catalog:
    with path.open("rb") as f:
        return read_po(f, abort_invalid=True)


def _is_translated(string: Any) -> bool:
    if isinstance(string, tuple | list):
        return bool(string) and all(string)
    return bool(string)


def translations(catalog: Catalog) -> dict[Key, Any]:
    """What a compiled catalogue must contain: every translated, non-fuzzy entry."""
    # Plural entries: babel's read_po gives tuples, read_mo lists; keys and values must compare equal.
    return {
        (m.context, tuple(m.id) if isinstance(m.id, list | tuple) else m.id): (
            tuple(m.string) if isinstance(m.string, list | tuple) else m.string
        )
        for m in catalog
        if m.id and not m.fuzzy and _is_translated(m.string)
    }


def msgids(catalog: Catalog) -> set[Key]:
    return {(m.context, tuple(m.id) if isinstance(m.id, list | tuple) else m.id) for m in catalog if m.id}


PLACEHOLDER = re.compile(r"%(?:\((\w+)\))?[-#0 +]*\d*(?:\.\d+)?[sdifr%]")


def placeholders(text: str) -> list[str]:
    """The placeholders of a python-format string, sorted: `name` for each %(name)s, `%s`/`%d` for each %s/%d."""
    found = []
    for match in PLACEHOLDER.finditer(text):
        if match.group(0) == "%%":
            continue
        found.append(match.group(1) or "%" + match.group(0)[-1])
    return sorted(found)


def entry_problems(message: Any, locale: str) -> list[str]:
    label = repr(message.id if not isinstance(message.id, tuple) else message.id[0])
    if message.context:
        label += f" (context {message.context!r})"
    problems = []
    if message.fuzzy:
        problems.append(f"fuzzy entry {label}: check the translation and remove the fuzzy flag")
    if locale != SOURCE_LOCALE and not _is_translated(message.string):
        problems.append(f"untranslated {label}")
    if _is_translated(message.string) and "python-format" in message.flags:
        if isinstance(message.id, tuple):
            # A plural form may leave the count out ("une minute"), never add one; the last form has them all.
            expected = placeholders(message.id[-1])
            forms = list(message.string)
            wrong = [f for f in forms if not set(placeholders(f)) <= set(expected)]
            wrong += [forms[-1]] if placeholders(forms[-1]) != expected and forms[-1] not in wrong else []
        else:
            expected = placeholders(message.id)
            wrong = [message.string] if placeholders(message.string) != expected else []
        problems += [f"placeholders differ in {label}: {expected} vs {placeholders(w)} in {w!r}" for w in wrong]
    return problems


def catalogue_problems(root: Path = ROOT) -> list[str]:
    problems = []
    for _, locale, path in po_files(root):
        rel = path.relative_to(root)
        if not path.exists():
            problems.append(f"{rel}: missing (run `make messages`)")
            continue
        try:
            catalog = read_catalogue(path)
        except Exception as exc:  # babel raises several types for a malformed file
            problems.append(f"{rel}: cannot be read: {exc}")
            continue
        plural_header = str(catalog.mime_headers and dict(catalog.mime_headers).get("Plural-Forms", ""))
        if "INTEGER" in plural_header or "EXPRESSION" in plural_header:
            problems.append(f"{rel}: the Plural-Forms header is still makemessages' placeholder")
        if catalog.obsolete:
            problems.append(f"{rel}: {len(catalog.obsolete)} obsolete (#~) entries: run `make messages`")
        problems += [f"{rel}: {p}" for m in catalog if m.id for p in entry_problems(m, locale)]
    return problems


def compile_catalogues(root: Path = ROOT) -> list[Path]:
    """Write every .mo from its .po (translated, non-fuzzy entries only); return the files written."""
    written = []
    for _, _, path in po_files(root):
        if not path.exists():
            continue
        catalog = read_catalogue(path)
        # Untranslated plural entries must not reach the .mo: babel would compile them as empty strings.
        for message in list(catalog):
            if message.id and (message.fuzzy or not _is_translated(message.string)):
                catalog.delete(message.id, context=message.context)
        buffer = io.BytesIO()
        write_mo(buffer, catalog)
        mo = path.with_suffix(".mo")
        if not mo.exists() or mo.read_bytes() != buffer.getvalue():
            mo.write_bytes(buffer.getvalue())
            written.append(mo)
    return written


def compiled_problems(root: Path = ROOT) -> list[str]:
    problems = []
    for _, _, path in po_files(root):
        if not path.exists():
            continue
        mo = path.with_suffix(".mo")
        rel = mo.relative_to(root)
        if not mo.exists():
            problems.append(f"{rel}: missing (run `make messages`)")
            continue
        try:
            with mo.open("rb") as f:
                gettext.GNUTranslations(f)  # what Django loads: fails on a bad Plural-Forms header, too
            with mo.open("rb") as f:
                compiled = translations(read_mo(f))
        except Exception as exc:
            problems.append(f"{rel}: cannot be loaded: {exc}")
            continue
        if compiled != translations(read_catalogue(path)):
            problems.append(f"{rel}: out of date with its .po (run `make messages`)")
    return problems


# -- extraction ---------------------------------------------------------------------------------


def missing_gettext_tools() -> list[str]:
    return [tool for tool in GETTEXT_TOOLS if shutil.which(tool) is None]


def makemessages_command() -> list[str]:
    command = [sys.executable, "manage.py", "makemessages", "--no-obsolete", "--add-location", "file"]
    command += [arg for locale in LOCALES for arg in ("--locale", locale)]
    command += [arg for name in sorted(IGNORED_DIRS) for arg in ("--ignore", name)]
    return command


def extract(root: Path = ROOT) -> None:
    """Update every .po from the code (makemessages), keeping existing translations."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings"}
    for catalogue_dir in CATALOGUE_DIRS:
        (root / catalogue_dir).mkdir(parents=True, exist_ok=True)  # makemessages files strings by folder
    command = makemessages_command()  # our own interpreter and fixed arguments
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)  # noqa: S603
    if result.returncode != 0:
        raise RuntimeError(f"makemessages failed:\n{result.stdout}\n{result.stderr}")
    _fix_new_headers(root)


PLURAL_FORMS = {"en": "nplurals=2; plural=(n != 1);", "fr_CA": "nplurals=2; plural=(n > 1);"}
LANGUAGE_NAMES = {"en": "English", "fr_CA": "French (Canada)"}
CATALOGUE_NAMES = {
    "locale": "the site (templates/, accounts/, project/)",
    "oauth_client/locale": "the oauth_client app",
    "idp/locale": "the embedded development provider (idp/)",
}


def _fix_new_headers(root: Path) -> None:
    # A catalogue that makemessages creates has a template header: fill it in once (later runs keep it). The
    # plural rule matters: without it gettext cannot load a catalogue with plural entries.
    for catalogue_dir, locale, path in po_files(root):
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        header, sep, body = text.partition("\n\n")
        fixed = header.replace("#, fuzzy\n", "")
        if "SOME DESCRIPTIVE TITLE" in fixed:
            fixed = fixed[fixed.index('msgid ""') :]
            name = CATALOGUE_NAMES.get(catalogue_dir, catalogue_dir)
            fixed = (
                f"# {LANGUAGE_NAMES[locale]} catalogue of {name} (see docs/i18n.md).\n"
                "# Distributed under the same license as the project.\n#\n" + fixed
            )
        replacements = {
            "Project-Id-Version: PACKAGE VERSION": "Project-Id-Version: django-oauth-refresh-site",
            "Last-Translator: FULL NAME <EMAIL@ADDRESS>": "Last-Translator: the project team",
            "Language-Team: LANGUAGE <LL@li.org>": f"Language-Team: {LANGUAGE_NAMES[locale]}",
            "Language: \\n": f"Language: {locale}\\n",
            "nplurals=INTEGER; plural=EXPRESSION;": PLURAL_FORMS[locale],
        }
        for old, new in replacements.items():
            fixed = fixed.replace(old, new)
        if "Plural-Forms:" not in fixed:
            fixed += f'\n"Plural-Forms: {PLURAL_FORMS[locale]}\\n"'
        if fixed != header:
            path.write_text(fixed + sep + body, encoding="utf-8")


def _copy_sources(root: Path, target: Path) -> None:
    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = {n for n in names if n in IGNORED_DIRS - {"migrations"} or n.endswith((".sqlite3", ".egg-info"))}
        if Path(directory).name == "LC_MESSAGES":
            skipped |= {n for n in names if n.endswith((".po", ".mo"))}  # extract from scratch
        return skipped

    shutil.copytree(root, target, ignore=ignore, dirs_exist_ok=True)


def extraction_problems(root: Path = ROOT) -> list[str]:
    """Extract into a scratch copy of the sources and compare with the committed catalogues."""
    problems = []
    with tempfile.TemporaryDirectory(prefix="i18n-") as scratch:
        copy = Path(scratch) / "src"
        _copy_sources(root, copy)
        extract(copy)
        for catalogue_dir, locale, path in po_files(root):
            fresh_path = po_path(catalogue_dir, locale, copy)
            fresh = msgids(read_catalogue(fresh_path)) if fresh_path.exists() else set()
            committed = msgids(read_catalogue(path)) if path.exists() else set()
            rel = path.relative_to(root)
            for context, msgid in sorted(fresh - committed, key=str):
                problems.append(f"{rel}: lacks {_show(context, msgid)} (run `make messages`, then translate)")
            for context, msgid in sorted(committed - fresh, key=str):
                problems.append(f"{rel}: keeps {_show(context, msgid)}, no longer in the code (run `make messages`)")
    return problems


def _show(context: str | None, msgid: Any) -> str:
    text = repr(msgid[0] if isinstance(msgid, tuple) else msgid)
    return f"{text} (context {context!r})" if context else text


# -- strings given to people without translation --------------------------------------------------


def source_files(root: Path, suffixes: tuple[str, ...], under: str | None = None) -> Iterator[Path]:
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_DIRS and not d.endswith(".egg-info"))
        here = Path(directory)
        if under is not None and under not in here.relative_to(root).parts:
            continue
        for name in sorted(filenames):
            if name.endswith(suffixes):
                yield here / name


TEXT_ATTRIBUTES = {"title", "alt", "placeholder", "aria-label", "aria-description", "label"}
UNCHECKED_ELEMENTS = {"script", "style", "code", "pre", "kbd", "samp"}
WORD = re.compile(r"[^\W\d_]{2,}")
LITERAL_FILTER = re.compile(r"""\|(?:default|default_if_none|yesno):(?!_\()(["'])(.*?)\1""")
SKIPPED_BLOCKS = {"blocktranslate": "endblocktranslate", "blocktrans": "endblocktrans", "comment": "endcomment"}


class _VisibleText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[int, str]] = []
        self._unchecked = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in UNCHECKED_ELEMENTS:
            self._unchecked += 1
        attributes = dict(attrs)
        checked = set(TEXT_ATTRIBUTES)
        if tag == "input" and (attributes.get("type") or "").lower() in ("submit", "button", "reset"):
            checked.add("value")
        for name, value in attrs:
            if name in checked and value and WORD.search(value):
                self.found.append((self.getpos()[0], value))

    def handle_endtag(self, tag: str) -> None:
        if tag in UNCHECKED_ELEMENTS and self._unchecked:
            self._unchecked -= 1

    def handle_data(self, data: str) -> None:
        if not self._unchecked and WORD.search(data):
            self.found.append((self.getpos()[0], data.strip()))


CODE_BLOCKS = {"bodyclass", "extrastyle", "extrahead"}


def template_text_problems(source: str) -> list[tuple[int, str]]:
    """(line, text) for each piece of text a template shows that is not marked for translation."""
    from django.template.base import Lexer, TokenType

    problems: list[tuple[int, str]] = []
    lines = source.splitlines()
    ignored_lines = {i + 1 for i, line in enumerate(lines) if IGNORE_MARK in line}
    parts: list[str] = []
    closing: str | None = None
    for token in Lexer(source).tokenize():
        line = token.lineno or 0
        words = token.contents.split()
        if token.token_type in (TokenType.VAR, TokenType.BLOCK) and line not in ignored_lines:
            problems += [(line, m.group(2)) for m in LITERAL_FILTER.finditer(token.contents) if WORD.search(m.group(2))]
        # Template code (and text inside blocktranslate or comment) becomes a blank, so the HTML around it still
        # parses and keeps its line numbers.
        blank = "\n" * token.contents.count("\n") or " "
        if closing is not None:
            if token.token_type is TokenType.BLOCK and words[:1] == [closing]:
                closing = None
            parts.append(blank)
            continue
        if token.token_type is TokenType.BLOCK and words and words[0] in SKIPPED_BLOCKS:
            closing = SKIPPED_BLOCKS[words[0]]
        elif token.token_type is TokenType.BLOCK and words[:1] == ["block"] and words[1:2] and words[1] in CODE_BLOCKS:
            closing = "endblock"  # the admin's CSS-class and <head> blocks hold no text a person reads
        parts.append(token.contents if token.token_type is TokenType.TEXT else blank)
    parser = _VisibleText()
    parser.feed("".join(parts))
    parser.close()
    problems += [(line, text) for line, text in parser.found if line not in ignored_lines]
    return sorted(problems)


def template_problems(root: Path = ROOT) -> list[str]:
    problems = []
    for path in source_files(root, (".html", ".txt", ".xml"), under="templates"):
        for line, text in template_text_problems(path.read_text(encoding="utf-8")):
            problems.append(f"{path.relative_to(root)}:{line}: not marked for translation: {text!r}")
    return problems


# Keyword arguments and class attributes whose value a person reads.
TEXT_KEYWORDS = {
    "verbose_name",
    "verbose_name_plural",
    "help_text",
    "label",
    "empty_label",
    "description",
    "short_description",
    "empty_value_display",
    "title",
    "message",
}
# Calls whose first argument a person reads.
TEXT_CALLS = {
    "UserRejected",
    "ValidationError",
    "HttpResponseBadRequest",
    "HttpResponseForbidden",
    "HttpResponseNotFound",
    "HttpResponseGone",
    "HttpResponseServerError",
}
MESSAGE_LEVELS = {"debug", "info", "success", "warning", "error"}


def _literal(node: ast.AST | None) -> bool:
    """A string written in the code (not passed through gettext)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and bool(WORD.search(node.value))
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        return _literal(node.left) or _literal(node.right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return _literal(node.func.value)
    return False


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


class _PythonChecker(ast.NodeVisitor):
    def __init__(self) -> None:
        self.found: list[tuple[int, str]] = []
        self._choices = 0

    def flag(self, node: ast.AST, why: str) -> None:
        self.found.append((getattr(node, "lineno", 0), why))

    def visit_Call(self, node: ast.Call) -> None:
        name = _name(node.func)
        if isinstance(node.func, ast.Attribute) and _name(node.func.value) == "messages":
            position = 2 if name == "add_message" else 1 if name in MESSAGE_LEVELS else None
            if position is not None and len(node.args) > position and _literal(node.args[position]):
                self.flag(node, f"messages.{name}() with an untranslated string")
        if (name in TEXT_CALLS or name.endswith("Field")) and node.args and _literal(node.args[0]):
            self.flag(node, f"{name}() with an untranslated string")
        for keyword in node.keywords:
            if keyword.arg in TEXT_KEYWORDS and _literal(keyword.value):
                self.flag(keyword.value, f"{keyword.arg}= with an untranslated string")
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        choices = any(_name(base).endswith("Choices") for base in node.bases)
        self._choices += choices
        self.generic_visit(node)
        self._choices -= choices

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            # (`label` is an identifier as a class attribute: AppConfig.label.)
            if _name(target) in TEXT_KEYWORDS - {"label"} and _literal(node.value):
                self.flag(node, f"{_name(target)} = an untranslated string")
            if self._choices and isinstance(target, ast.Name) and target.id.isupper():
                label = node.value.elts[-1] if isinstance(node.value, ast.Tuple) else None
                if label is None or _literal(label):
                    self.flag(node, f"choice {target.id} without a translated label")
        self.generic_visit(node)


def python_text_problems(source: str) -> list[tuple[int, str]]:
    checker = _PythonChecker()
    checker.visit(ast.parse(source))
    lines = source.splitlines()
    return sorted(
        (line, why) for line, why in checker.found if not (0 < line <= len(lines) and IGNORE_MARK in lines[line - 1])
    )


def python_problems(root: Path = ROOT) -> list[str]:
    problems = []
    for path in source_files(root, (".py",)):
        if path.parent == root:
            continue  # manage.py, setup files
        for line, why in python_text_problems(path.read_text(encoding="utf-8")):
            problems.append(f"{path.relative_to(root)}:{line}: {why}")
    return problems


# -- command line -------------------------------------------------------------------------------


def check(root: Path = ROOT, *, require_gettext: bool = False) -> list[str]:
    problems = template_problems(root) + python_problems(root) + catalogue_problems(root) + compiled_problems(root)
    missing = missing_gettext_tools()
    if missing:
        note = f"cannot compare the catalogues with the code: {', '.join(missing)} not found (apt-get install gettext)"
        if require_gettext:
            problems.append(note)
        else:
            print(f"warning: {note}", file=sys.stderr)
    else:
        problems += extraction_problems(root)
    return problems


def _report(problems: Iterable[str]) -> int:
    problems = list(problems)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s)" if problems else "translations: all good")
    return 1 if problems else 0


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "check"
    if command == "extract":
        missing = missing_gettext_tools()
        if missing:
            print(f"{', '.join(missing)} not found: install GNU gettext (apt-get install gettext)", file=sys.stderr)
            return 2
        extract()
        return 0
    if command == "compile":
        for mo in compile_catalogues():
            print(f"compiled {mo.relative_to(ROOT)}")
        return 0
    if command == "check":
        return _report(check(require_gettext=bool(os.environ.get("CI"))))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
