"""The package's layout: dependencies between its modules point one way."""

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "src" / "sian"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """``{module: the sian modules it imports}``, function-local imports included."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    module = ".".join([*base, node.module] if node.module else base)
                else:
                    module = node.module or ""
                targets |= {module, *(f"{module}.{alias.name}" for alias in node.names)}
            elif isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_circles_among_the_modules_function_local_imports_included():
    graph = import_graph()
    assert len(graph) > 40 and "sian.hub" in graph["sian.convert"]
    assert cycles(graph) == []


def test_the_circle_check_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def module_map() -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every row of docs/architecture.md's module map."""
    text = (REPO / "docs" / "architecture.md").read_text()
    table = text.split("## Module map", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`sian"):
            rows.append((cells[0].strip("`"), [n.strip().strip("`") for n in cells[2].split(",") if n.strip()]))
    return rows


def test_the_architecture_page_names_only_modules_and_names_that_exist():
    import importlib
    import inspect

    rows = module_map()
    assert len(rows) > 25
    for module_name, names in rows:
        module = importlib.import_module(module_name)
        for name in names:
            head, _, attribute = name.partition(".")
            owner = getattr(module, head, None)
            assert owner is not None, f"{module_name}.{head} does not exist"
            if attribute and not hasattr(owner, attribute):  # an instance attribute: the constructor sets it
                assert f"self.{attribute} =" in inspect.getsource(owner), f"{module_name}.{name} does not exist"


def test_the_module_map_covers_every_module_and_lists_them_in_import_order():
    graph = import_graph()
    order = [name for name, _ in module_map()]
    top_level = {name if name.count(".") < 2 or name.startswith("sian.models.") else ".".join(name.split(".")[:2])
                 for name in graph if name != "sian" and name != "sian.__main__"}  # fmt: skip
    top_level -= {"sian.models"}  # listed by its modules
    assert top_level <= set(order), sorted(top_level - set(order))
    position = {name: i for i, name in enumerate(order)}

    def row_of(module: str) -> str | None:
        while module and module not in position:
            module = module.rsplit(".", 1)[0] if "." in module else ""
        return module or None

    for module, targets in graph.items():
        mine = row_of(module)
        for target in targets:
            theirs = row_of(target)
            if mine and theirs and mine != theirs:
                assert position[theirs] < position[mine], f"{module} imports {target}, listed below it"
