"""The layering, checked from the source: every import points down the layers of docs/architecture.md, no import
circle among rtransfer's modules, and rtransfer's own modules imported at the top of a module (where a circle would
show), a function-local import only with a comment that says why (a command's lazy import, so the CLI starts fast;
an optional dependency)."""

import ast
from pathlib import Path

import rtransfer

SRC = Path(rtransfer.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _targets(node: ast.AST, module: str) -> list[str]:
    """The rtransfer modules an import statement loads (a `from package import submodule` loads the submodule)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "rtransfer"]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:  # relative: resolved against the importing module's package
        package = module.split(".")[: -node.level] if MODULES[module].name != "__init__.py" else module.split(".")
        base = ".".join([*package, *([node.module] if node.module else [])])
    else:
        base = node.module or ""
    if base.split(".")[0] != "rtransfer":
        return []
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


def _top_level_edges(module: str, tree: ast.Module) -> set[str]:
    """What importing `module` imports at once: its top-level imports and the packages above each of them."""
    edges = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for statement in [node, *(ast.walk(node) if isinstance(node, ast.If | ast.Try) else [])]:
            for target in _targets(statement, module):
                parts = target.split(".")
                edges.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
    # A module's own packages are being imported already when it runs (a package's __init__ may import its
    # submodules, which import their siblings): not a circle.
    ancestors = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
    return {e for e in edges if e in MODULES and e != module and e not in ancestors}


STAGES = ("rtransfer.train", "rtransfer.probes", "rtransfer.evaluate", "rtransfer.report", "rtransfer.monitor")
STAGES += ("rtransfer.integrations",)
NUMBERS = ("rtransfer.sources", "rtransfer.paper", "rtransfer.transfer", "rtransfer.comparisons", "rtransfer.samples")
NUMBERS += ("rtransfer.drift_law",)
# docs/architecture.md's layers, top first: a module imports from its own layer or the ones below.
LAYERS = [
    ("rtransfer.commands", "rtransfer.cli"),
    ("rtransfer.study",),
    ("rtransfer.jobs",),
    STAGES,
    NUMBERS,
    ("rtransfer.specs",),
    ("rtransfer.benchmarks", "rtransfer.lab"),
    ("rtransfer.grading", "rtransfer.engines"),
    ("rtransfer.records", "rtransfer.runs", "rtransfer.jsonl", "rtransfer.errors", "rtransfer.paths"),
    ("rtransfer.online", "rtransfer.processes", "rtransfer"),
]


def _layer(module: str) -> int:
    """The layer of the longest prefix that names the module."""
    found = [(len(p), i) for i, group in enumerate(LAYERS) for p in group if module == p or module.startswith(p + ".")]
    assert found, f"{module} is in no layer of docs/architecture.md"
    return max(found)[1]


def _upward(module: str, tree: ast.Module) -> list[str]:
    """Imports of `module` (function-local ones included) from a layer above its own."""
    out = []
    for node in ast.walk(tree):
        for target in _targets(node, module):
            target = target if target in MODULES else target.rsplit(".", 1)[0]
            if _layer(target) < _layer(module):
                out.append(f"{module} imports {target} (line {node.lineno})")
    return out


def test_every_import_points_down_the_layers():
    upward = [u for m, p in sorted(MODULES.items()) for u in _upward(m, ast.parse(p.read_text()))]
    assert not upward, "imports from a layer above:\n" + "\n".join(upward)


def test_no_module_imports_itself_through_a_circle():
    graph = {m: _top_level_edges(m, ast.parse(p.read_text())) for m, p in MODULES.items()}
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                circle = [*stack[stack.index(n) :], n]
                raise AssertionError("import circle: " + " -> ".join(circle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)


def _function_local_imports(path: Path, module: str) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    lines = path.read_text().splitlines()
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if _targets(node, module) and not _explained(lines, node.lineno):
                found.append((node.lineno, lines[node.lineno - 1].strip()))
    return sorted(set(found))


def _explained(lines: list[str], lineno: int) -> bool:
    """A comment on the import's line, or above the block of imports it is part of."""
    if "#" in lines[lineno - 1]:
        return True
    i = lineno - 2
    while i >= 0 and _import_line(lines[i]):
        i -= 1
    return i >= 0 and lines[i].strip().startswith("#")


def _import_line(line: str) -> bool:
    text = line.strip()
    return text.startswith(("from ", "import ")) or text == ")" or (text.endswith(",") and "=" not in text)


def test_rtransfer_modules_are_imported_at_the_top_unless_a_comment_says_why():
    bare = [
        f"{path.relative_to(SRC.parent)}:{line}: {text}"
        for module, path in sorted(MODULES.items())
        for line, text in _function_local_imports(path, module)
    ]
    assert not bare, "function-local imports without a reason:\n" + "\n".join(bare)


def test_the_checks_see_a_circle_and_a_bare_local_import(tmp_path):
    """The two checks above can fail: they find what they look for in a module written to have it."""
    source = (
        "from rtransfer.specs import key_of\n\ndef f():\n    from rtransfer.runs import versions\n    return versions\n"
    )
    tree = ast.parse(source)
    assert _top_level_edges("rtransfer.specs", tree) == set()  # itself: not an edge
    assert _upward("rtransfer.engines.hf", ast.parse("def f():\n    from rtransfer.study.plan import plan\n"))
    assert not _upward("rtransfer.study.plan", ast.parse("from rtransfer.engines.hf import HFEngine\n"))
    assert "rtransfer.specs" in _top_level_edges("rtransfer.runs", tree)
    path = tmp_path / "m.py"
    path.write_text(source)
    assert [line for line, _ in _function_local_imports(path, "rtransfer.m")] == [4]
    path.write_text(source.replace("versions\n    return", "versions  # lazy: a cycle otherwise\n    return"))
    assert _function_local_imports(path, "rtransfer.m") == []
    block = "def f():\n    # lazy: loaded when it runs\n    import os\n    from rtransfer.runs import versions\n"
    path.write_text(block)
    assert _function_local_imports(path, "rtransfer.m") == []
    path.write_text(block.replace("    # lazy: loaded when it runs\n", "    x = 1\n"))
    assert [line for line, _ in _function_local_imports(path, "rtransfer.m")] == [4]
