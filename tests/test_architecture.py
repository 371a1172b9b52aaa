"""The shape of the house: stages, layers and sizes (an ``ast`` scan of the package's source).

Fails on an import cycle (imports inside functions included), an import of another module's
private name, an import against the layers (science -> interfaces -> workflows -> bids_app,
the simulator never imported by production code), a module over 900 lines, or a library
function over 100 code lines (workflow builders and argument parsers excepted). The scanner is
itself tested on small packages written to ``tmp_path``, so each rule is seen to fail.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "nipype_brainrecon"
#: Import name -> source folder (setup.cfg's package_dir).
ROOTS = {
    PACKAGE: REPO / "nipype_brainrecon",
    f"{PACKAGE}.workflows": REPO / "workflows",
    f"{PACKAGE}.bids_app": REPO / "bids_app",
}
MAX_MODULE_LINES = 900
MAX_FUNCTION_CODE_LINES = 100
#: Layers, lowest first: a module may import its own layer and those below.
LAYERS = (
    ("science", ""),
    ("interfaces", f"{PACKAGE}.interfaces"),
    ("workflows", f"{PACKAGE}.workflows"),
    ("bids_app", f"{PACKAGE}.bids_app"),
)
SYNTHETIC = f"{PACKAGE}.synthetic"


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    tree: ast.Module = field(repr=False)
    lines: int = 0


def collect(roots: Mapping[str, Path]) -> dict[str, Module]:
    """Every module below the roots, by import name (nested roots win over their parent)."""
    modules: dict[str, Module] = {}
    nested = [r.resolve() for r in roots.values()]
    for pkg, root in roots.items():
        for path in sorted(root.rglob("*.py")):
            owner = max(
                (r for r in nested if path.resolve().is_relative_to(r)), key=lambda r: len(r.parts)
            )
            if owner != root.resolve():
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            name = ".".join([pkg, *parts])
            text = path.read_text(encoding="utf-8")
            modules[name] = Module(name, path, is_package, ast.parse(text), len(text.splitlines()))
    return modules


def _package_of(module: Module) -> str:
    return module.name if module.is_package else module.name.rpartition(".")[0]


def imports(modules: Mapping[str, Module], module: Module) -> list[tuple[str, str | None, int]]:
    """``(module imported, name imported from it or None, line)`` for every import, nested too."""
    found = []
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(module).split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                full = f"{target}.{alias.name}"
                if full in modules:  # "from package import module"
                    found.append((full, None, node.lineno))
                else:
                    found.append((target, alias.name, node.lineno))
    return found


def graph(modules: Mapping[str, Module]) -> dict[str, set[str]]:
    """Module -> modules of the project it imports."""
    return {
        name: {target for target, _, _ in imports(modules, mod) if target in modules}
        for name, mod in modules.items()
    }


def cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def private_imports(modules: Mapping[str, Module]) -> list[str]:
    """Imports of a private name from another module (a private module of one's own package,
    imported as a module, is allowed)."""
    bad = []
    for mod in modules.values():
        for target, name, line in imports(modules, mod):
            if name is not None:
                if name.startswith("_") and not name.startswith("__") and target != mod.name:
                    bad.append(f"{mod.path}:{line}: {name} from {target}")
                continue
            leaf = target.rpartition(".")[2]
            if leaf.startswith("_") and target.rpartition(".")[0] != _package_of(mod):
                bad.append(f"{mod.path}:{line}: module {target}")
    return bad


def _layer(name: str, layers=LAYERS) -> int:
    level = 0
    for i, (_, prefix) in enumerate(layers):
        if prefix and (name == prefix or name.startswith(prefix + ".")):
            level = i
    return level


def layer_violations(
    modules: Mapping[str, Module], layers=LAYERS, synthetic=SYNTHETIC
) -> list[str]:
    """Imports of a higher layer, or of the simulator from production code."""
    bad = []
    demo = f"{layers[-1][1]}."
    for mod in modules.values():
        own = _layer(mod.name, layers)
        in_synthetic = mod.name == synthetic or mod.name.startswith(synthetic + ".")
        for target, _, line in imports(modules, mod):
            if target not in modules and target.rpartition(".")[0] not in modules:
                continue
            if _layer(target, layers) > own:
                bad.append(f"{mod.path}:{line}: {mod.name} ({layers[own][0]}) imports {target}")
            to_synthetic = target == synthetic or target.startswith(synthetic + ".")
            if to_synthetic and not in_synthetic and not mod.name.startswith(demo):
                bad.append(f"{mod.path}:{line}: {mod.name} imports the simulator ({target})")
    return bad


def code_lines(lines: list[str], node: ast.AST) -> int:
    """Lines of a function that hold code: no blank, comment-only or docstring lines."""
    skip: set[int] = set()
    body = getattr(node, "body", [])
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        if isinstance(body[0].value.value, str):
            skip = set(range(body[0].lineno, body[0].end_lineno + 1))
    return sum(
        1
        for i in range(node.lineno, node.end_lineno + 1)
        if i not in skip and lines[i - 1].strip() and not lines[i - 1].strip().startswith("#")
    )


def is_exempt(module: str, function: str) -> bool:
    """Workflow builders and argument parsers may be long (they read as one declaration)."""
    if module.startswith(f"{PACKAGE}.workflows") and function.startswith(("init_", "connect_")):
        return True
    return module.startswith(f"{PACKAGE}.bids_app") and function.endswith("parser")


def long_functions(
    modules: Mapping[str, Module], limit: int = MAX_FUNCTION_CODE_LINES
) -> list[str]:
    bad = []
    for mod in modules.values():
        lines = mod.path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(mod.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = code_lines(lines, node)
                if n > limit and not is_exempt(mod.name, node.name):
                    bad.append(f"{mod.path}:{node.lineno}: {node.name} has {n} code lines")
    return bad


def long_modules(modules: Mapping[str, Module], limit: int = MAX_MODULE_LINES) -> list[str]:
    return [f"{m.path}: {m.lines} lines" for m in modules.values() if m.lines > limit]


# --------------------------------------------------------------------------------------------
# The project
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def project():
    return collect(ROOTS)


def test_the_scan_sees_every_stage(project):
    for stage in ("bids", "glm", "rois", "features", "ridge", "diffusion", "evaluation"):
        assert f"{PACKAGE}.{stage}" in project
    for stage in ("encoding", "reports", "derivatives", "datalad", "synthetic", "config"):
        assert f"{PACKAGE}.{stage}" in project
    assert f"{PACKAGE}.workflows.participant" in project
    assert f"{PACKAGE}.bids_app.cli" in project


def test_no_import_cycle(project):
    assert cycles(graph(project)) == []


def test_no_private_name_imported_from_another_module(project):
    assert private_imports(project) == []


def test_layers_import_only_downwards(project):
    assert layer_violations(project) == []


def test_module_sizes(project):
    assert long_modules(project) == []


def test_function_sizes(project):
    assert long_functions(project) == []


# --------------------------------------------------------------------------------------------
# The scanner fails where it should
# --------------------------------------------------------------------------------------------
def _write(root: Path, files: Mapping[str, str]) -> dict[str, Module]:
    for rel, text in files.items():
        path = root / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return collect({"pkg": root / "pkg"})


def test_scanner_finds_a_cycle_hidden_in_a_function(tmp_path):
    mods = _write(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from .b import g\n",
            "b.py": "def g():\n    from .a import f\n    return f\n",
            "c.py": "from . import a\n",
        },
    )
    assert cycles(graph(mods)) == [["pkg.a", "pkg.b"]]


def test_scanner_finds_private_imports(tmp_path):
    mods = _write(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "def _helper():\n    pass\n",
            "b.py": "from .a import _helper\n",
            "sub/__init__.py": "from . import _impl\n",
            "sub/_impl.py": "x = 1\n",
            "c.py": "from .sub import _impl\n",
        },
    )
    bad = private_imports(mods)
    assert len(bad) == 2
    assert "_helper from pkg.a" in bad[0] and "module pkg.sub._impl" in bad[1]


def test_scanner_finds_layer_violations(tmp_path):
    mods = _write(
        tmp_path,
        {
            "__init__.py": "",
            "science.py": "from .app import run\n",
            "app/__init__.py": "",
            "app/run.py": "from ..synthetic import sim\nfrom .. import science\n",
            "fit.py": "from .synthetic import sim\n",
            "synthetic/__init__.py": "",
            "synthetic/sim.py": "from .. import science\n",
        },
    )
    layers = (("science", ""), ("app", "pkg.app"))
    bad = layer_violations(mods, layers, synthetic="pkg.synthetic")
    assert len(bad) == 2, bad
    assert "pkg.science (science) imports pkg.app" in bad[0] or "pkg.science" in " ".join(bad)
    assert any("pkg.fit imports the simulator" in b for b in bad)


def test_scanner_counts_code_lines_not_docstrings_or_comments(tmp_path):
    def body(n):
        return "".join(f"    x{i} = {i}\n" for i in range(n))

    mods = _write(
        tmp_path,
        {
            "__init__.py": "",
            "ok.py": 'def f():\n    """Doc.\n\n    More.\n    """\n' + "    # note\n\n" + body(99),
            "long.py": "def g():\n" + body(101),
        },
    )
    bad = long_functions(mods)
    assert len(bad) == 1 and "g has 102 code lines" in bad[0]
    assert long_modules(mods, limit=104) == [f"{mods['pkg.ok'].path}: 106 lines"]
