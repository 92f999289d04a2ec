"""The public API: every exported name resolves, and the TensorFlow-free parts stay free of it."""

import ast
import subprocess
import sys
from pathlib import Path

import ssl_multilabel


def test_every_public_name_resolves_to_its_module():
    for name in ssl_multilabel.__all__:
        value = getattr(ssl_multilabel, name)
        if name != "__version__":
            module = ssl_multilabel._EXPORTS[name]
            assert getattr(value, "__module__", "").startswith(f"ssl_multilabel.{module}") or not callable(value), name


def test_unknown_name_is_an_attribute_error():
    try:
        ssl_multilabel.no_such_name
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("expected AttributeError")


def test_labels_and_propagation_do_not_import_tensorflow():
    code = (
        "import sys, ssl_multilabel as s; s.PartialLabels; s.knn_graph; s.KNNLabelPropagation; "
        "s.random_cells; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def _import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, at any depth of the file (function-level
    imports included), plus the packages whose `__init__` an import runs on the way."""
    package = root.name
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    prefix = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join(prefix + ([base] if base else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                parts = target.split(".")
                # Importing a.b.c runs a/__init__, a/b/__init__ and a/b/c: each is an edge, except the
                # packages that contain the importing module (already running) and the root package.
                for i in range(2, len(parts) + 1):
                    dotted = ".".join(parts[:i])
                    if dotted in modules and dotted != name and not name.startswith(dotted + ".") and dotted != package:
                        graph[name].add(dotted)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_sees_function_level_and_package_init_cycles(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg.sub.c import g\n")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub.b import h\n")
    (pkg / "sub" / "b.py").write_text("def h():\n    import pkg.a\n")
    (pkg / "sub" / "c.py").write_text("g = 1\n")
    (pkg / "d.py").write_text("from . import a\n")
    # a -> sub (its __init__ runs) -> sub.b -> a: a cycle that only exists through the package init.
    assert _cycles(_import_graph(pkg)) == [["pkg.a", "pkg.sub", "pkg.sub.b"]]


def test_the_package_has_no_import_cycles():
    root = Path(ssl_multilabel.__file__).parent
    assert _cycles(_import_graph(root)) == []
