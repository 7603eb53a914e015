"""The import shape of dugray, read from the source (every import, the lazy ones inside functions too):
the core never reaches up into the session, the models or the Serve app, and no two modules import
each other, directly or round a longer loop."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = (
    "dugray.solve",
    "dugray.propagate",
    "dugray.nig",
    "dugray.usermap",
    "dugray.proposal",
    "dugray.detail_patches",
    "dugray.upsample",
    "dugray.sym3",
)
"""The core: plain numpy / scipy / numba, below everything else."""
ABOVE_CORE = ("dugray.session", "dugray.models", "serve")


def _modules() -> dict[str, Path]:
    mods = {}
    for path in (ROOT / "dugray").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _imports(name: str, path: Path) -> set[str]:
    """The absolute names ``name`` imports (``from a import b`` gives ``a.b``: a module or a name of ``a``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


def _within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_core_imports_nothing_above_it():
    mods = _modules()
    lazy = {f"dugray.{n}" for n in __import__("dugray")._EXPORTS}  # `from dugray import MattingSession` is the session
    wrong = {
        name: sorted(i for i in _imports(name, path) if _within(i, ABOVE_CORE) or i in lazy)
        for name, path in mods.items()
        if _within(name, CORE)
    }
    wrong = {name: up for name, up in wrong.items() if up}
    assert not wrong, wrong


def test_no_import_cycle():
    mods = _modules()

    def module_of(target: str) -> str | None:
        while target and target not in mods:
            target = target.rpartition(".")[0]
        return target or None

    # a module's own packages are imported before it in any case: those arrows do not count
    graph = {
        name: {m for m in map(module_of, _imports(name, path)) if m and m != name and not name.startswith(m + ".")}
        for name, path in mods.items()
    }
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert not cycles, [" -> ".join(c) for c in cycles]
