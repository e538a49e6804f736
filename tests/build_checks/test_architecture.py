"""docs/ARCHITECTURE.md stays true: every module is in its table, imports only what its
row allows (so nothing imports upward), and the allowed imports have no cycle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "engine"
DOC = ROOT / "docs" / "ARCHITECTURE.md"
_ROW = re.compile(r"^\| `(engine(?:\.[\w.]+)?)` \|[^|]*\| (.*) \|$")


def _allowed() -> dict[str, set[str]]:
    table: dict[str, set[str]] = {}
    for line in DOC.read_text().splitlines():
        m = _ROW.match(line.strip())
        if m:
            # `engine` is the package itself (its public API: `import engine`); any
            # other name is a module under it
            table[m.group(1)] = {n if n == "engine" else "engine." + n
                                 for n in re.findall(r"`([\w.]+)`", m.group(2))}
    return table


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _exists(mod: str) -> bool:
    p = ROOT.joinpath(*mod.split("."))
    return p.with_suffix(".py").exists() or p.is_dir() or mod == "engine._ccore"


def _imports(path: Path) -> set[str]:
    """The engine modules a file imports (``from . import x`` counts module x)."""
    mod = _module_name(path)
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("engine")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("engine"):
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                found.add(sub if _exists(sub) else target)
    found.discard(mod)
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_is_in_the_architecture_table():
    table = _allowed()
    missing = [_module_name(p) for p in _modules() if _module_name(p) not in table]
    assert not missing, f"add these modules to docs/ARCHITECTURE.md: {missing}"
    stale = [m for m in table if not _exists(m)]
    assert not stale, f"docs/ARCHITECTURE.md lists modules that do not exist: {stale}"


def test_no_module_imports_what_its_row_does_not_allow():
    table = _allowed()
    bad = {}
    for p in _modules():
        mod = _module_name(p)
        extra = _imports(p) - table.get(mod, set())
        if extra:
            bad[mod] = sorted(extra)
    assert not bad, f"imports not allowed by docs/ARCHITECTURE.md: {bad}"


def test_the_allowed_imports_form_no_cycle():
    table = _allowed()
    state: dict[str, int] = {}

    def visit(m: str, path: tuple[str, ...]) -> None:
        if state.get(m) == 2:
            return
        assert state.get(m) != 1, f"import cycle: {' -> '.join((*path, m))}"
        state[m] = 1
        for d in table.get(m, ()):
            visit(d, (*path, m))
        state[m] = 2

    for m in table:
        visit(m, ())


def test_the_check_sees_an_upward_import(tmp_path):
    """The checker itself: a relative import from a low module is found and named."""
    f = tmp_path / "engine" / "formats.py"
    f.parent.mkdir()
    f.write_text("from .database import Database\nfrom . import layout\n")
    global ROOT
    saved = ROOT
    ROOT = tmp_path
    try:
        (tmp_path / "engine" / "database.py").write_text("")
        (tmp_path / "engine" / "layout.py").write_text("")
        assert _imports(f) == {"engine.database", "engine.layout"}
    finally:
        ROOT = saved
