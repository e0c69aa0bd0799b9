"""The package's exports have one list, `oauth_client._EXPORTS`: `__all__` and the lazy `__getattr__` come from
it, and these tests hold the two copies that cannot be derived from it — the `TYPE_CHECKING` imports (static type
checkers read only those) and the import block at the top of docs/api.md — to exactly the same names."""

from __future__ import annotations

import ast
import re
from importlib import import_module
from types import ModuleType

import pytest

import oauth_client
from tests.conftest import repo_root, run_fresh_python


def type_checking_imports() -> dict[str, str]:
    """`{name: module}` of the imports under `if TYPE_CHECKING:` in oauth_client/__init__.py."""
    tree = ast.parse((repo_root() / "oauth_client" / "__init__.py").read_text())
    (block,) = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
    ]
    imports: dict[str, str] = {}
    for statement in block.body:
        assert isinstance(statement, ast.ImportFrom) and statement.module, ast.unparse(statement)
        for alias in statement.names:
            assert alias.asname is None, ast.unparse(statement)
            # `from oauth_client import signals` exports the submodule itself.
            module = f"oauth_client.{alias.name}" if statement.module == "oauth_client" else statement.module
            assert alias.name not in imports, alias.name
            imports[alias.name] = module
    return imports


def documented_exports() -> list[str]:
    """The names in the `from oauth_client import (...)` block that opens docs/api.md."""
    text = (repo_root() / "docs" / "api.md").read_text()
    match = re.search(r"```python\nfrom oauth_client import \(\n(.*?)\)\n```", text, re.DOTALL)
    assert match, "docs/api.md opens with the full `from oauth_client import (...)` block"
    return [name.strip() for name in match.group(1).split(",") if name.strip()]


def test_all_is_the_export_list():
    assert oauth_client.__all__ == sorted(oauth_client._EXPORTS)


def test_type_checking_imports_are_the_export_list():
    assert type_checking_imports() == oauth_client._EXPORTS


def test_docs_list_exactly_the_exports():
    names = documented_exports()
    assert len(names) == len(set(names)), "listed twice"
    assert set(names) == set(oauth_client._EXPORTS)


@pytest.mark.parametrize("name", sorted(oauth_client._EXPORTS))
def test_every_export_resolves_to_its_module_s_object(name):
    module = import_module(oauth_client._EXPORTS[name])
    exported = getattr(oauth_client, name)
    if isinstance(exported, ModuleType):
        assert exported is module
    else:
        assert exported is getattr(module, name)


def test_from_import_works_and_unknown_names_raise():
    from oauth_client import get_tokens, signals

    assert get_tokens is import_module("oauth_client.api").get_tokens
    assert signals is import_module("oauth_client.signals")
    with pytest.raises(AttributeError, match="no_such_thing"):
        oauth_client.no_such_thing  # noqa: B018
    with pytest.raises(ImportError):
        from oauth_client import no_such_thing  # noqa: F401


def test_importing_the_package_imports_none_of_its_exports():
    """Lazy: `import oauth_client` (e.g. from settings) must not need Django's app registry."""
    code = (
        "import sys, oauth_client\n"
        "loaded = sorted({m for m in oauth_client._EXPORTS.values() if m in sys.modules})\n"
        "assert not loaded and 'django' not in sys.modules, (loaded, 'django' in sys.modules)\n"
    )
    result = run_fresh_python(code)
    assert result.returncode == 0, result.stderr


def test_no_module_imports_a_private_name_of_another_library():
    """The app uses Django's and its libraries' public APIs only (`from x import _y` of another package is a
    private name; the package's own modules may share theirs)."""
    found = []
    for path in sorted((repo_root() / "oauth_client").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.module.startswith("oauth_client"):
                found += [f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
            if isinstance(node, ast.Import):
                found += [
                    f"{path.name}: {a.name}" for a in node.names if any(p.startswith("_") for p in a.name.split("."))
                ]
    assert found == []
