"""swm_core's layout: no import cycles, short functions, no private names borrowed across modules, a small core.

The checks read the source with ``ast`` (nothing is imported for them), except two that run fresh interpreters:
every module imported alone, and the lines of the modules a training or solver script loads. Each static checker
also runs on a small synthetic package that breaks its rule, so a checker that stopped finding anything fails.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "swm_core"
MAX_FUNCTION_LINES = 80
MAX_CORE_LINES = 4000


# ------------------------------------------------------------------------------------------------- helpers


def module_files(root: Path, package: str) -> dict[str, Path]:
    """{dotted module name: file} of every module of ``package`` (a folder under ``root``)."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module name an ``ImportFrom`` names (relative imports resolved against ``module``)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str | None]]:
    """(imported module, imported name or None) for every import in ``module``, at any depth (lazy ones too),
    restricted to modules of the package. ``from pkg import sub`` counts as importing the module ``pkg.sub``."""
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, None) for alias in node.names if alias.name in modules]
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, is_package, node)
            for alias in node.names:
                if f"{target}.{alias.name}" in modules:
                    out.append((f"{target}.{alias.name}", None))
                elif target in modules:
                    out.append((target, alias.name))
    return out


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    modules = module_files(root, package)
    return {m: {t for t, _ in imports_of(m, p, modules) if t != m} for m, p in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (a list of modules, first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def long_functions(root: Path, package: str, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """'module:line name (n lines)' for every function or method longer than ``limit`` lines (def to end)."""
    out = []
    for module, path in module_files(root, package).items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    out.append(f"{module}:{node.lineno} {node.name} ({n} lines)")
    return out


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_aliases(tree: ast.AST, module: str, is_package: bool, modules: dict[str, Path]) -> dict[str, str]:
    """{local name: package module} for the names a module binds to modules of the package."""
    roots = {m.split(".")[0] for m in modules}
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top in roots:  # ``import a.b`` binds ``a``; ``import a.b as c`` binds ``c`` to ``a.b``
                    aliases[alias.asname or top] = alias.name if alias.asname else top
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, is_package, node)
            for alias in node.names:
                if f"{target}.{alias.name}" in modules:
                    aliases[alias.asname or alias.name] = f"{target}.{alias.name}"
    return aliases


def _dotted(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id] + parts[::-1]


def private_uses(root: Path, package: str) -> list[str]:
    """'module: other._name' for every private name a module takes from another module of the package, by
    ``from other import _name`` or as an attribute ``other._name`` of an imported module."""
    modules = module_files(root, package)
    out = []
    for module, path in modules.items():
        for target, name in imports_of(module, path, modules):
            if name is not None and _private(name) and target != module:
                out.append(f"{module}: from {target} import {name}")
        tree = ast.parse(path.read_text(), str(path))
        aliases = _module_aliases(tree, module, path.name == "__init__.py", modules)
        for node in ast.walk(tree):
            chain = _dotted(node) if isinstance(node, ast.Attribute) else None
            if not chain or chain[0] not in aliases:
                continue
            full = aliases[chain[0]].split(".") + chain[1:]
            # the longest prefix that names a module of the package owns the next name
            k = max([1] + [i for i in range(1, len(full) + 1) if ".".join(full[:i]) in modules])
            owner = ".".join(full[:k])
            if k < len(full) and _private(full[k]) and owner != module and owner in modules:
                out.append(f"{module}: {owner}.{full[k]}")
    return sorted(set(out))


# ------------------------------------------------------------------------------------------------- swm_core


def test_no_import_cycle():
    graph = import_graph(ROOT, PACKAGE)
    assert len(graph) > 20, sorted(graph)  # every module was found
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_function_over_80_lines():
    assert long_functions(ROOT, PACKAGE) == []


def test_no_private_names_across_modules():
    assert private_uses(ROOT, PACKAGE) == []


def _import_alone(module: str) -> tuple[str, subprocess.CompletedProcess]:
    code = f"import importlib; importlib.import_module({module!r})"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return module, subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=300)


def test_every_module_imports_alone():
    """Each module first, in a fresh interpreter: an import cycle at run time fails as ImportError there."""
    modules = sorted(module_files(ROOT, PACKAGE))
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:
        results = list(pool.map(_import_alone, modules))
    failed = {m: r.stderr.strip().splitlines()[-1:] for m, r in results if r.returncode != 0}
    assert not failed, failed


CORE_PROBE = textwrap.dedent("""
    import json, sys
    import swm_core
    after_init = sorted(m for m in sys.modules if m.startswith("swm_core"))
    import swm_core.data, swm_core.checkpoint
    world = swm_core.World("swm/TwoRoom-v1")
    world.close()
    files = {m: getattr(mod, "__file__", None) for m, mod in sys.modules.items() if m.startswith("swm_core")}
    print(json.dumps({"after_init": after_init, "files": files}))
""")


def test_core_is_small_and_loads_no_converter():
    """What every training or solver script loads (swm_core, its data reader and writer, checkpoints, and what a
    World of the default env imports) stays readable: at most ~4,000 lines, and no converter among it."""
    out = subprocess.run([sys.executable, "-c", CORE_PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert not [m for m in probe["after_init"] if m.startswith("swm_core.convert")], probe["after_init"]
    assert not [m for m in probe["files"] if m.startswith("swm_core.convert")], sorted(probe["files"])
    lines = {m: len(Path(f).read_text().splitlines()) for m, f in probe["files"].items() if f}
    assert {"swm_core.data", "swm_core.lance_writer", "swm_core.world", "swm_core.envs.two_room"} <= set(lines)
    total = sum(lines.values())
    assert total <= MAX_CORE_LINES, f"the core is {total} lines (> {MAX_CORE_LINES}): " + ", ".join(
        f"{m} {n}" for m, n in sorted(lines.items(), key=lambda x: -x[1]))


# ------------------------------------------------------------------------- the checkers find what they should


def make_package(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def test_checkers_find_cycles_long_functions_and_private_names(tmp_path):
    long_body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    root = make_package(tmp_path, {
        "__init__.py": "from pkg.a import f\n",
        "a.py": "from pkg.sub import b\n\ndef f():\n    return b\n",
        "sub/__init__.py": "",
        "sub/b.py": "def g():\n    from pkg import a  # lazy, still a cycle\n    return a._helper\n",
        "c.py": "from pkg.a import _helper\nimport pkg.sub.b as bee\n\nbee._hidden\n",
        "d.py": f"class K:\n    def m(self):\n{textwrap.indent(long_body, '    ')}\n",
        "e.py": "from . import c\nfrom .sub.b import g\n\nc.__name__\n",
    })
    graph = import_graph(root, "pkg")
    assert graph["pkg.e"] == {"pkg.c", "pkg.sub.b"}  # relative imports resolved
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.a"]
    assert find_cycle({"x": {"y"}, "y": set()}) is None
    assert long_functions(root, "pkg") == ["pkg.d:2 m (81 lines)"]
    assert private_uses(root, "pkg") == ["pkg.c: from pkg.a import _helper", "pkg.c: pkg.sub.b._hidden",
                                         "pkg.sub.b: pkg.a._helper"]


@pytest.mark.parametrize("rule", ["cycle", "long", "private"])
def test_checkers_pass_a_clean_package(tmp_path, rule):
    root = make_package(tmp_path, {
        "__init__.py": "from pkg.a import f\n",
        "a.py": "def f():\n    return _g()\n\ndef _g():\n    return 1\n",
        "b.py": "import pkg.a\nfrom pkg.a import f\n\npkg.a.f()\nf.__doc__\n",
    })
    if rule == "cycle":
        assert find_cycle(import_graph(root, "pkg")) is None
    elif rule == "long":
        assert long_functions(root, "pkg") == []
    else:
        assert private_uses(root, "pkg") == []
