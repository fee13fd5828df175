"""The architecture's rules as tests: the layer table of README.md, no SQL above the store,
small modules and functions.

The layer table (README, "Architecture") names every module and package of ``jobd``
with its layer. An import may point down or sideways, never up a layer; there is
no import cycle between modules (lazy and ``TYPE_CHECKING`` imports count too);
the client's modules import only layers 0–1 at load time (a person types a
client command dozens of times an hour: the daemon's stack is imported only by
the commands that run it, ``jobd run`` and ``jobd check-config``).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "jobd"
#: Statement shapes: a string that starts like one of these is SQL.
SQL = re.compile(
    r"^\s*(SELECT\s.+\sFROM\s|INSERT\s+(OR\s+\w+\s+)?INTO\s|UPDATE\s+\w+\s+SET\s|"
    r"DELETE\s+FROM\s|CREATE\s+(TABLE|INDEX|TRIGGER|VIRTUAL)\s|PRAGMA\s|BEGIN\b|COMMIT\b)",
    re.DOTALL,
)
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 50
#: Exceptions to the limits: none are left, and none may be added.
OVERSIZE_MODULES: frozenset[str] = frozenset()
LONG_FUNCTIONS: frozenset[str] = frozenset()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def table_rows() -> list[tuple[int, list[str], str]]:
    """README's architecture table: per row its layer, its modules (``jobd.engine``,
    ``jobd.config``, ... from ``engine/``, ``config.py``: paths inside ``jobd/``) and job."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Architecture", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].isdigit():
            continue
        rows.append((int(cells[0]), _cell_modules(cells[1]), cells[2]))
    return rows


def _cell_modules(cell: str) -> list[str]:
    """``core/` (`states.py`, ...), `logging.py``: a package and, in parentheses, modules
    inside it (``__init__.py`` there is the package itself), then top-level modules."""
    names: list[str] = []
    for package, inner, single in re.findall(r"`([^`]+/)`\s*\(([^)]*)\)|`([^`]+)`", cell):
        if not package:
            name = "jobd" if single == "__init__.py" else "jobd." + single.removesuffix("/")
            names.append(name.removesuffix(".py").replace("/", "."))
            continue
        base = "jobd." + package.removesuffix("/").replace("/", ".")
        names.append(base)
        for entry in re.findall(r"`([^`]+)`", inner):
            if entry != "__init__.py":
                names.append(base + "." + entry.removesuffix("/").removesuffix(".py"))
    return names


def layer_table() -> dict[str, int]:
    """``{"jobd.engine": 3, "jobd.config": 1, ...}``."""
    return {name: layer for layer, names, _ in table_rows() for name in names}


def client_modules() -> set[str]:
    """The modules of the row whose job starts with "the client"."""
    return {n for _, names, job in table_rows() if job.startswith("the client") for n in names}


def layer_of(module: str, table: dict[str, int]) -> int | None:
    """The layer of the nearest enclosing entry of the table (``jobd`` itself is only
    ``__init__.py``: a module it does not list has no layer)."""
    name = module
    while name and (name != "jobd" or module == "jobd"):
        if name in table:
            return table[name]
        name = name.rpartition(".")[0]
    return None


def imports(path: Path, known: dict[str, Path]) -> list[tuple[str, bool]]:
    """The jobd modules ``path`` imports, each with whether it is imported at load time
    (module level, not under ``TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    eager = {id(node) for node in _load_time_nodes(tree)}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            target = _resolve(name, known)
            if target is not None:
                found.append((target, id(node) in eager))
    return found


def _load_time_nodes(tree: ast.Module) -> list[ast.stmt]:
    out: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Try):
            out += node.body
        out.append(node)
    return out


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name if name.startswith("jobd") else None


def test_every_module_has_a_layer() -> None:
    table = layer_table()
    assert table, "README.md has no layer table under ## Architecture"
    missing = [m for m in modules() if layer_of(m, table) is None]
    assert not missing, f"modules missing from README's layer table: {missing}"
    stale = [entry for entry in table if entry not in modules()]
    assert not stale, f"README's layer table names modules that do not exist: {stale}"


def test_the_architecture_section_names_every_module() -> None:
    """Each module by its file name somewhere in README's "Architecture", which names no
    file that is gone: a newcomer reads there what a file they open is for."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Architecture", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"\b([a-z_]+\.py)\b", section))
    files = {p.name for p in PACKAGE.rglob("*.py")} | {
        p.name for p in (ROOT / "tests").glob("*.py")
    }
    unnamed = [
        str(p.relative_to(ROOT))
        for p in sorted(PACKAGE.rglob("*.py"))
        if p.name != "__init__.py" and p.name not in named
    ]
    assert not unnamed, f"modules README's architecture section does not name: {unnamed}"
    gone = sorted(named - files)
    assert not gone, f"README's architecture section names files that do not exist: {gone}"


def test_no_import_goes_up_a_layer() -> None:
    table, known = layer_table(), modules()
    wrong = []
    for module, path in known.items():
        own = layer_of(module, table)
        for target, _ in imports(path, known):
            other = layer_of(target, table)
            if own is not None and other is not None and other > own:
                wrong.append(f"{module} (layer {own}) imports {target} (layer {other})")
    assert not wrong, "imports up a layer:\n" + "\n".join(wrong)


def test_the_client_loads_only_layers_0_and_1() -> None:
    table, known = layer_table(), modules()
    client = client_modules()
    assert client, "no client modules found"
    wrong = [
        f"{module} imports {target} (layer {layer_of(target, table)}) at load time"
        for module in client
        for target, eager in imports(known[module], known)
        if eager and target not in client and (layer_of(target, table) or 0) > 1
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle() -> None:
    known = modules()
    graph = {m: {t for t, _ in imports(p, known) if t != m} for m, p in known.items()}
    # A package's __init__ re-exporting its own modules is not a cycle of the design.
    for module in graph:
        graph[module] = {t for t in graph[module] if not t.startswith(module + ".")}
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_one() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def sql_strings(path: Path) -> list[tuple[int, str]]:
    """String literals of ``path`` that are SQL statements."""
    found = []
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
    for tok in tokens:
        if tok.type == tokenize.STRING:
            try:
                value = ast.literal_eval(tok.string)
            except (ValueError, SyntaxError):  # an f-string: its literal text
                value = re.sub(r"^[a-zA-Z]*['\"]+|['\"]+$", "", tok.string)
            if isinstance(value, str) and SQL.match(value):
                found.append((tok.start[0], value))
    return found


def test_no_sql_outside_the_store() -> None:
    outside = [
        f"{path.relative_to(ROOT)}:{line}: {text[:60]!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if PACKAGE / "store" not in path.parents
        for line, text in sql_strings(path)
    ]
    assert not outside, "SQL outside jobd/store/:\n" + "\n".join(outside)


def test_only_timers_imports_apscheduler() -> None:
    importers = [
        module_name(path)
        for path in sorted(PACKAGE.rglob("*.py"))
        if re.search(r"^\s*(from|import) apscheduler", path.read_text(), re.MULTILINE)
    ]
    assert importers == ["jobd.plan.timers"]


def test_the_sql_finder_finds_sql(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        'A = "UPDATE jobs SET state = ? WHERE id = ?"\n'
        'B = f"SELECT {cols} FROM jobs"\n'
        'C = "the UPDATE ... WHERE of a transition"\n'
    )
    assert [line for line, _ in sql_strings(sample)] == [1, 2]
    assert sql_strings(PACKAGE / "store" / "sqlite" / "queries.py")


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.name))
def test_modules_and_functions_are_small(path: Path) -> None:
    rel = str(path.relative_to(ROOT))
    lines = path.read_text(encoding="utf-8").count("\n")
    if rel in OVERSIZE_MODULES:
        return
    assert lines <= MAX_MODULE_LINES, f"{rel} has {lines} lines (at most {MAX_MODULE_LINES})"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    long = [
        f"{rel}:{f.lineno} {f.name}: {f.end_lineno - f.lineno + 1} lines"
        for f in _functions(tree)
        if f.end_lineno is not None
        and f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES
        and f"{rel}:{f.name}" not in LONG_FUNCTIONS
    ]
    assert not long, "functions over 50 lines:\n" + "\n".join(long)


def test_no_module_is_shadowed_by_a_package() -> None:
    """``jobd/x.py`` beside a package ``jobd/x/`` would never be imported (the package
    wins): a change merged into a module that moved into a package must not hide there."""
    shadowed = [
        str(path.relative_to(ROOT))
        for path in sorted(PACKAGE.rglob("*.py"))
        if (path.with_suffix("") / "__init__.py").exists()
    ]
    assert not shadowed, f"modules shadowed by a package of the same name: {shadowed}"
    moved = [p for p in ("sqlwriter.py", "sql") if (PACKAGE / p).exists()]
    assert not moved, f"moved into jobd/store/sqlite/, back at the top: {moved}"
