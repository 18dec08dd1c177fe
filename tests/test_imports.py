"""The package's module structure: every module imports on its own, nothing imports the command
line, and no module reaches into a sibling's private (``_name``) helpers."""

import ast
import importlib.util
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "fastbce"
SOURCES = sorted(path for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts)


def _module_name(path):
    parts = ("fastbce", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = [_module_name(path) for path in SOURCES if path.name != "__main__.py"]


def _tree(path):
    return ast.parse(path.read_text(), str(path))


def _imported_from(node, module):
    """The absolute module name of an ``import``/``from ... import`` node in ``module``."""
    if node.level == 0:
        return node.module
    package = module.split(".")
    if not _is_package(module):
        package = package[:-1]
    base = package[:len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _is_package(module):
    return (PACKAGE.parent / module.replace(".", "/") / "__init__.py").is_file()


def _is_module(name):
    """Whether ``name`` (absolute, dotted) is a module or package of fastbce."""
    path = PACKAGE.parent / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file() or name == "fastbce._kernels"


def _imports(path):
    """(line, absolute module imported, names imported from it or None) of one source file."""
    module = _module_name(path)
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, _imported_from(node, module), [alias.name for alias in node.names]


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_on_its_own(module):
    if module == "fastbce.dask" and importlib.util.find_spec("dask") is None:
        pytest.skip("dask is not installed")
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_nothing_imports_the_command_line():
    found = []
    for path in SOURCES:
        if path == PACKAGE / "__main__.py":
            continue
        for line, imported, names in _imports(path):
            targets = [imported] + [f"{imported}.{name}" for name in names or ()]
            if "fastbce.cli" in targets:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line}")
    assert not found


def test_no_module_uses_a_siblings_private_names():
    """``from ._engine import run_pass`` and ``from . import _threads`` (a package-private module)
    are fine; ``from ._api import _helper`` or ``_threads._helper`` are not."""
    found = []
    for path in SOURCES:
        module = _module_name(path)
        tree = _tree(path)
        modules = set()  # local names bound to fastbce modules
        for line, imported, names in _imports(path):
            if not imported or not imported.startswith("fastbce"):
                continue
            for name in names or ():
                if _is_module(f"{imported}.{name}"):
                    modules.add(name)
                elif name.startswith("_"):
                    found.append(f"{module}:{line} imports {name} from {imported}")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in modules and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                found.append(f"{module}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert not found


def test_no_source_file_is_over_600_lines():
    lengths = {str(path.relative_to(PACKAGE.parent)): len(path.read_text().splitlines()) for path in SOURCES}
    assert {name: n for name, n in lengths.items() if n > 600} == {}
