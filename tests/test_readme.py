"""The README is checked like code: its speed table is the one benchmarks/readme_table.py writes
from the result set it names, its Python examples run (and print the values their comments
state), its links resolve, and it and benchmarks/README.md stay within their size limits."""

import ast
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BENCH_README = ROOT / "benchmarks" / "README.md"
# Modules of optional extras: a README block that imports one of them is skipped (with every block
# after it, which may use what it made) when it is not installed.
OPTIONAL = {"dask", "distributed", "pyarrow", "polars", "pandas", "torch", "jax", "tensorflow",
            "lightgbm", "xgboost", "matplotlib"}


def _table_module():
    spec = importlib.util.spec_from_file_location("readme_table", ROOT / "benchmarks" / "readme_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_speed_table_is_the_generated_one():
    table = _table_module()
    text = README.read_text(encoding="utf-8")
    block = table.between_markers(text)
    assert block is not None, "README.md has no speed-table markers"
    named = re.search(r"Result set: \[`([^`]+)`\]", block)
    assert named, "the speed table does not name its result set"
    result_set = ROOT / named.group(1)
    assert (result_set / "BENCHMARKS.json").is_file(), f"{named.group(1)} has no BENCHMARKS.json"
    expected = table.render(result_set, ROOT)
    assert block == expected, (
        "README.md's speed table differs from the result set it names: regenerate it with "
        f"`python benchmarks/readme_table.py {named.group(1)} README.md` instead of editing it")


def test_splice_replaces_only_the_table():
    table = _table_module()
    text = f"before\n{table.START}\nold\nlines\n{table.END}\nafter\n"
    assert table.splice(text, "new") == f"before\n{table.START}\nnew\n{table.END}\nafter\n"
    assert table.between_markers(table.splice(text, "new")) == "new"
    with pytest.raises(ValueError):
        table.splice("no markers\n", "new")


def _python_blocks(text):
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def _imported_modules(tree):
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


_STATED_VALUE = re.compile(r"#\s*(-?\d+\.\d+(?:e[-+]?\d+)?)\b")


@pytest.mark.slow
def test_python_examples_run(tmp_path, monkeypatch):
    """Every ```python block of README.md runs, in order, in one namespace (in a temporary
    folder: the examples write scores.parquet). An expression whose comment starts with a number
    must give that number."""
    import fastbce

    monkeypatch.chdir(tmp_path)
    blocks = _python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 5
    namespace = {"__name__": "__main__"}
    missing = None
    checked = 0
    try:
        for number, source in enumerate(blocks, 1):
            tree = ast.parse(source)
            absent = sorted(name for name in _imported_modules(tree) & OPTIONAL
                            if importlib.util.find_spec(name) is None)
            if absent:
                missing = f"README block {number} and later need {', '.join(absent)}"
                break
            lines = source.splitlines()
            for statement in tree.body:
                code = compile(ast.Module([statement], []), f"README.md block {number}", "exec")
                if isinstance(statement, ast.Expr):
                    value = eval(compile(ast.Expression(statement.value), f"README.md block {number}", "eval"),
                                 namespace)
                    stated = _STATED_VALUE.search(lines[statement.end_lineno - 1])
                    if stated:
                        assert float(value) == pytest.approx(float(stated.group(1)), rel=1e-12), (
                            f"README block {number}, line {statement.lineno}: "
                            f"{ast.get_source_segment(source, statement)} gives {value!r}")
                        checked += 1
                else:
                    exec(code, namespace)
    finally:
        fastbce.set_num_threads(None)
    assert checked >= 3
    if missing:
        pytest.skip(missing)


def _links(path):
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
    return re.findall(r"\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("path", [README, BENCH_README], ids=["README.md", "benchmarks/README.md"])
def test_links_resolve(path):
    for link in _links(path):
        if re.match(r"[a-z]+:", link):
            continue
        target, _, anchor = link.partition("#")
        target_path = (path.parent / target).resolve() if target else path
        assert target_path.exists(), f"{path.name}: link to {link} does not resolve"
        if anchor and target_path.suffix == ".md":
            anchors = _anchors(target_path)
            assert anchor in anchors, f"{path.name}: no heading for #{anchor} in {target_path.name}"


def _anchors(path):
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"),
                                                   flags=re.DOTALL | re.MULTILINE), flags=re.MULTILINE):
        anchors.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return anchors


def test_sizes():
    readme = README.read_bytes()
    lines = readme.count(b"\n")
    assert lines <= 650, f"README.md has {lines} lines (at most 650)"
    assert len(readme) <= 40 * 1024, f"README.md has {len(readme)} bytes (at most 40 KB)"
    bench_lines = BENCH_README.read_bytes().count(b"\n")
    assert bench_lines <= 320, f"benchmarks/README.md has {bench_lines} lines (at most ~300)"
