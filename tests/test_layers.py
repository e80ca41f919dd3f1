"""The layer contract: the suite's modules in layers, each importing only its own layer and those below, and no circle.

Every import counts, at a module's top or inside a function, and so does `importlib.import_module` with a name
whose start is written out (the registry loading `experiments.<name>`). What a module does when run as a script
(`if __name__ == "__main__":`) is an entry point's, not the module's. A new module must be given a layer here.
"""
from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cnn_experiments", "experiments", "benchmarks")

# top to bottom: a module may import modules of its own layer and of the layers below it
LAYERS = [
    ("entry points", ["cnn_experiments.cli", "experiments.*.__main__", "benchmarks.*"]),
    ("commands over the studies, and the Python API",
     ["cnn_experiments.api", "cnn_experiments.studies.checks", "cnn_experiments.studies.reproduction",
      "cnn_experiments.studies.power"]),
    ("the study pipeline and its registry", ["cnn_experiments.studies.study", "cnn_experiments.studies.registry"]),
    ("the experiments, and the comparisons on a user's own images",
     ["experiments", "experiments.*", "cnn_experiments.own_images", "cnn_experiments.own_images.*"]),
    ("the interface an experiment fills in", ["cnn_experiments.studies", "cnn_experiments.studies.experiment"]),
    ("reports", ["cnn_experiments.reports", "cnn_experiments.reports.*"]),
    ("sweeps: many runs, their executors, the rate search", ["cnn_experiments.sweeps", "cnn_experiments.sweeps.*"]),
    ("training one run", ["cnn_experiments.training", "cnn_experiments.training.*"]),
    ("models and data", ["cnn_experiments.models", "cnn_experiments.models.*", "cnn_experiments.data",
                         "cnn_experiments.data.*"]),
    ("foundations: a run's config and store, statistics, errors, options",
     ["cnn_experiments", "cnn_experiments.runs", "cnn_experiments.runs.*", "cnn_experiments.statistics",
      "cnn_experiments.statistics.*", "cnn_experiments.errors", "cnn_experiments.options"]),
]
ENTRY = LAYERS[0][1]  # only an entry point imports an entry point (`python -m experiments.pooling` runs the CLI)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def is_main_guard(node: ast.AST) -> bool:
    t = node.test if isinstance(node, ast.If) else None
    return (isinstance(t, ast.Compare) and isinstance(t.left, ast.Name) and t.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in t.comparators))


def walk(node: ast.AST):
    "Every node under `node`, leaving out the bodies of `if __name__ == '__main__':`."
    for child in ast.iter_child_nodes(node):
        if is_main_guard(child):
            continue
        yield child
        yield from walk(child)


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    "The project's modules that `name` imports, resolved to modules (a name imported from a package may be one)."
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            # a submodule named is imported itself; any other name comes from the module `base`
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.JoinedStr)):
            head = node.args[0].values[0]
            prefix = head.value if isinstance(head, ast.Constant) else ""
            # f"experiments.{name}": each module one name below the prefix
            targets = [m for m in known if prefix and m.startswith(prefix) and "." not in m[len(prefix):]]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def layer_of(name: str) -> int:
    for i, (_, patterns) in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            return i
    raise LookupError(name)


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def test_every_module_has_a_layer():
    unplaced = [m for m in modules() if not any(fnmatch.fnmatchcase(m, p) for _, ps in LAYERS for p in ps)]
    assert not unplaced, f"give these modules a layer in tests/test_layers.py: {unplaced}"


def test_no_module_imports_a_higher_layer_or_an_entry_point():
    g = graph()
    up = [f"{a} ({LAYERS[layer_of(a)][0]}) -> {b} ({LAYERS[layer_of(b)][0]})"
          for a, targets in g.items() for b in sorted(targets)
          if layer_of(b) < layer_of(a) or (layer_of(a) and any(fnmatch.fnmatchcase(b, p) for p in ENTRY))]
    assert not up, "imports up a layer:\n" + "\n".join(up)


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    "One circle through each strongly connected set of modules (Tarjan), none where the imports form no circle."
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while (w := stack.pop()) != v:
                on.discard(w)
                group.append(w)
            on.discard(v)
            if group:
                out.append(sorted([v, *group]))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_imports_form_no_circle_run_time_ones_included():
    assert not cycles(graph())


def test_the_walk_sees_function_level_imports_and_import_module():
    "The contract is only as good as what it reads: a late import and a registry's import_module are found."
    g = graph()
    assert "cnn_experiments.reports.report" in g["cnn_experiments.studies.study"]
    assert {"experiments.pooling", "experiments.dropout"} <= g["cnn_experiments.studies.registry"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("source, expected", [
    ("def f():\n    from .study import do_run\n", {"cnn_experiments.studies.study"}),
    ("if __name__ == '__main__':\n    from ..cli import main\n", set()),
    ("from ..statistics import stats as S\n", {"cnn_experiments.statistics.stats"}),
    ("from ..statistics.stats import Comparison\n", {"cnn_experiments.statistics.stats"}),
    ("from .. import __version__\n", {"cnn_experiments"}),
])
def test_an_import_is_resolved_wherever_it_is_written(tmp_path, source, expected):
    f = tmp_path / "mod.py"
    f.write_text(source)
    known = {"cnn_experiments", "cnn_experiments.studies.study", "cnn_experiments.cli",
             "cnn_experiments.statistics.stats"}
    assert imports("cnn_experiments.studies.mod", f, known) == expected
