"""The house's arrows point down (ARCHITECTURE.md): every import of a library module, at module
level or inside a function, is read from the source, and no package may import one above it.

The packages in order, lowest first: the helpers every package may use (``arguments``, ``errors``, ``io_utils``,
``lazy``, ``tensorflow_only``, ``tf_startup`` and the package's own ``__init__``), then
``layers``, ``models``, ``data``, ``evaluation``, ``caffe``, ``zoo``, ``train``, ``export``, ``deploy``,
``serve``, ``visualize``, ``cli``. Inside a package the modules import one another without
cycles: what two modules both need lives in a module below them both.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Where each installed package's source lives (pyproject's package-dir mapping).
SOURCES = {"nin_keras": ROOT / "nin_keras", "nin_keras.zoo": ROOT / "zoo", "nin_keras.export": ROOT / "export"}
HELPERS = ("", "arguments", "errors", "io_utils", "lazy", "tensorflow_only", "tf_startup")
ORDER = ("layers", "models", "data", "evaluation", "caffe", "zoo", "train", "export", "deploy", "serve", "visualize", "cli")


def library_modules() -> dict[str, Path]:
    """Every library module's dotted name -> its file."""
    found = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if package == "nin_keras" and parts[0] in ("zoo", "export"):
                continue  # mapped from the top-level folders, not these
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def imports_of(name: str, path: Path, modules: set[str] = frozenset()) -> set[str]:
    """Every ``nin_keras`` module ``path`` imports, anywhere in the file (relative imports
    resolved): ``from nin_keras.zoo import registry`` imports the module ``nin_keras.zoo.registry``
    when ``modules`` holds it, ``from nin_keras.zoo import load_preset`` the package itself."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                found.add(submodule if submodule in modules else module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {module for module in found if module.split(".")[0] == "nin_keras"}


def import_graph() -> dict[str, set[str]]:
    """Library module -> the library modules it imports (itself excluded)."""
    modules = library_modules()
    return {name: {target for target in imports_of(name, path, set(modules)) if target in modules} - {name}
            for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The graph's strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while not component or node not in component:
                component.add(stack.pop())
            on_stack.difference_update(component)
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def rank(module: str) -> int:
    """The module's package's place in ``ORDER`` (-1: a helper every package may use)."""
    top = module.split(".")[1] if "." in module else ""
    return -1 if top in HELPERS else ORDER.index(top)


def upward_imports() -> set[tuple[str, str]]:
    return {(name, target) for name, targets in import_graph().items() for target in targets
            if rank(target) > rank(name)}


def test_every_library_package_has_a_place_in_the_order():
    tops = {name.split(".")[1] for name in library_modules() if "." in name}
    assert tops <= set(HELPERS) | set(ORDER), sorted(tops - set(HELPERS) - set(ORDER))


def test_no_package_imports_one_above_it():
    assert upward_imports() == set(), "upward imports: " + ", ".join(f"{a} -> {b}" for a, b in sorted(upward_imports()))


def test_no_import_cycles():
    found = cycles(import_graph())
    assert found == [], f"import cycles (move what the modules share into one below them): {sorted(map(sorted, found))}"


def test_the_check_finds_a_cycle_and_sees_imports_inside_functions(tmp_path):
    """The check's own test: a module importing upward from inside a function is caught, and a
    three-module loop is one cycle while a chain is none."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    module = tmp_path / "sneaky.py"
    module.write_text("def later():\n    from nin_keras.train import evaluate\n    from ..export import exporter\n")
    found = imports_of("nin_keras.zoo.sneaky", module, set(library_modules()))
    assert {"nin_keras.train.evaluate", "nin_keras.export.exporter"} <= found
    assert rank("nin_keras.train.evaluate") > rank("nin_keras.zoo.sneaky")


#: The library's deprecated aliases (they warn, naming the replacement), by the module users import them from.
DEPRECATED = {
    "nin_keras.zoo": {"Preset", "load_preset", "from_preset", "inference_model", "build_model"},
    "nin_keras.zoo.presets": {"Preset", "load_preset", "from_preset", "inference_model"},
    "nin_keras.export": {"Predictor"},
    "nin_keras.train": {"evaluate_model"},
}
#: The modules that define or re-export the aliases.
DEFINING = {"nin_keras.zoo", "nin_keras.zoo.presets", "nin_keras.zoo.builder", "nin_keras.export", "nin_keras.train"}


def deprecated_uses(path: Path) -> list[str]:
    """Where ``path`` imports a deprecated alias (``from nin_keras.zoo import load_preset``, the
    ``presets`` module) or reaches one as an attribute of its package (``zoo.load_preset``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module in DEPRECATED:
            found += [f"{path.name}:{node.lineno} imports {node.module}.{alias.name}" for alias in node.names
                      if alias.name in DEPRECATED[node.module] or f"{node.module}.{alias.name}" in DEPRECATED]
        elif isinstance(node, ast.Import):
            found += [f"{path.name}:{node.lineno} imports {alias.name}" for alias in node.names
                      if alias.name == "nin_keras.zoo.presets"]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, (ast.Name, ast.Attribute)):
            owner = node.value.id if isinstance(node.value, ast.Name) else node.value.attr
            if any(module.rsplit(".", 1)[-1] == owner and node.attr in names for module, names in DEPRECATED.items()):
                found.append(f"{path.name}:{node.lineno} uses {owner}.{node.attr}")
    return found


def test_the_library_uses_none_of_its_own_deprecated_aliases():
    # The aliases are for users' old code; the library calls what replaces them, so it never warns itself.
    files = {name: path for name, path in library_modules().items() if name not in DEFINING}
    files.update({f"benchmarks.{path.stem}": path for path in (ROOT / "benchmarks").glob("*.py")})
    assert [use for path in files.values() for use in deprecated_uses(path)] == []


def test_the_deprecated_alias_check_sees_imports_and_attributes(tmp_path):
    code = tmp_path / "old.py"
    code.write_text("from nin_keras.zoo import ImageClassifier, load_preset\nfrom nin_keras import zoo\n"
                    "def f():\n    return zoo.inference_model(zoo.ImageClassifier.from_preset('x'), ())\n"
                    "from nin_keras.zoo import presets\n")
    assert deprecated_uses(code) == ["old.py:1 imports nin_keras.zoo.load_preset",
                                     "old.py:5 imports nin_keras.zoo.presets", "old.py:4 uses zoo.inference_model"]
