"""The code's shape: no import cycles between poetgen's modules (lazy imports included), and the
README's Layout (its rows of modules and its module map) true to the code."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "poetgen"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_modules(path: Path) -> set[str]:
    """poetgen modules that `path` imports anywhere (inside functions too), except for type checkers."""
    found = set()

    def visit(node):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("poetgen"):
            if node.module == "poetgen":
                found.update(alias.name for alias in node.names if (PACKAGE / f"{alias.name}.py").exists())
            else:
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[1] for alias in node.names
                         if alias.name.startswith("poetgen.") and alias.name.count(".") >= 1)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    found.discard(path.stem)
    return found


def import_graph() -> dict[str, set[str]]:
    return {path.stem: imported_modules(path) for path in PACKAGE.glob("*.py")}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    stack: list[str] = []

    def walk(module):
        state[module] = "open"
        stack.append(module)
        for child in sorted(graph.get(module, ())):
            if state.get(child) == "open":
                return stack[stack.index(child):] + [child]
            if child not in state:
                cycle = walk(child)
                if cycle:
                    return cycle
        state[module] = "done"
        stack.pop()
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = walk(module)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_lazy_cycle():
    assert find_cycle({"corpus": {"importers"}, "importers": {"corpus"}}) == ["corpus", "importers", "corpus"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles():
    graph = import_graph()
    assert graph["importers"] >= {"corpus"}, "the graph misses imports"
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph))


def unused_names(package: Path, readers: list[Path]) -> list[str]:
    """Module-level names of `package` that no file mentions beyond their definition (dead code).

    Decorated functions (click commands, fixtures) are used by their decorator and are not listed.
    """
    texts = [path.read_text(encoding="utf-8") for path in readers]
    unused = []
    for path in sorted(package.glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.decorator_list:
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [target.id for target in node.targets if isinstance(target, ast.Name)]
            else:
                continue
            for name in names:
                pattern = re.compile(rf"\b{re.escape(name)}\b")
                if not name.startswith("__") and sum(len(pattern.findall(text)) for text in texts) <= 1:
                    unused.append(f"{path.stem}.{name}")
    return unused


def test_no_dead_module_level_names():
    root = PACKAGE.parent
    readers = [*root.glob("poetgen/*.py"), *root.glob("tests/*.py"), *root.glob("benchmarks/*.py"),
               root / "README.md"]
    assert unused_names(PACKAGE, readers) == []


def test_the_dead_name_finder_finds_one(tmp_path):
    (tmp_path / "corpus.py").write_text('LINE_END = "。？！"\nUSED = 1\nprint(USED)\n')
    assert unused_names(tmp_path, [tmp_path / "corpus.py"]) == ["corpus.LINE_END"]


def test_the_readme_module_map_lists_every_module():
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    mapped = set(re.findall(r"^\| `([\w.]+\.py)` \|", section, re.M))
    assert mapped == {path.name for path in PACKAGE.glob("*.py")}


def readme_rows() -> list[list[str]]:
    """The module rows of the README's Layout block, top row first."""
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    return [re.findall(r"([\w]+)\.py", line) for line in block.splitlines() if ".py" in line]


def test_the_readme_rows_hold_every_module_and_imports_only_go_up():
    rows = readme_rows()
    row_of = {module: index for index, row in enumerate(rows) for module in row}
    assert sorted(row_of) == sorted(path.stem for path in PACKAGE.glob("*.py"))
    assert sum(map(len, rows)) == len(row_of)   # each module in one row
    downward = [f"{module} imports {target}" for module, targets in import_graph().items()
                for target in targets if row_of[target] > row_of[module]]
    assert downward == []


INTERFACE = {"forced", "apply", "observe"}   # the methods of a logit rule, each taking the sampling `step`


def rule_roots(paths: list[Path]) -> list[str]:
    """The classes of `paths` that define a logit rule's methods without deriving (by name) from another
    that does: one base for every rule means exactly one root."""
    classes: dict[str, list[tuple[str, list[str], bool]]] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                defines = any(isinstance(item, ast.FunctionDef) and item.name in INTERFACE
                              and "step" in [arg.arg for arg in item.args.args] for item in node.body)
                bases = [base.id if isinstance(base, ast.Name) else base.attr for base in node.bases
                         if isinstance(base, (ast.Name, ast.Attribute))]
                classes.setdefault(node.name, []).append((path.stem, bases, defines))

    def is_rule(name: str, seen: frozenset = frozenset()) -> bool:
        return name not in seen and any(defines or any(is_rule(base, seen | {name}) for base in bases)
                                        for _, bases, defines in classes.get(name, ()))

    return sorted(f"{module}.{name}" for name, found in classes.items() for module, bases, defines in found
                  if defines and not any(is_rule(base) for base in bases))


def test_every_logit_rule_derives_from_the_one_rule_base():
    root = PACKAGE.parent
    assert rule_roots([*root.glob("poetgen/*.py"), *root.glob("benchmarks/*.py")]) == ["rule_base.Rule"]


def test_the_rule_root_finder_finds_a_second_base(tmp_path):
    (tmp_path / "a.py").write_text("class Rule:\n    def apply(self, logits, step): pass\n"
                                   "class Tone(Rule):\n    def apply(self, logits, step): pass\n")
    (tmp_path / "b.py").write_text("class RuleBase:\n    def forced(self, step): return None\n"
                                   "class Rhyme(RuleBase):\n    pass\nclass Other:\n    def apply(self, x): pass\n")
    assert rule_roots(sorted(tmp_path.glob("*.py"))) == ["a.Rule", "b.RuleBase"]
