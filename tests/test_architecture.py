"""The shape of the code, read with `ast`: at most three modules at the top of aetl/ beside
the package face, no function in aetl/ over 60 lines or 6 parameters, no import cycle among
aetl's modules, run state with typed fields, and every test that starts a process marked slow.

Imports. An edge A -> B is an import of aetl module B that runs when A is imported: at
module level, also inside a top-level `try`/`if` or a class body. Deferred imports inside a
function body (which aetl uses to keep `aetl --help` fast and optional dependencies
optional) and imports under `if TYPE_CHECKING:` cannot fail the way a cycle at import time
does; still, they are counted too (test_no_cycle_counting_deferred_and_type_checking_imports),
so that no two modules need each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "aetl"
TESTS = ROOT / "tests"
MAX_LINES = 60
MAX_PARAMETERS = 6  # self and cls aside
TOP_MODULES = 3  # at the top of aetl/, besides __init__ and __main__


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(node: ast.Import | ast.ImportFrom) -> set[str]:
    """The aetl modules an import statement loads: `from aetl.x import name` loads aetl.x.name
    when that is a module, else aetl.x (aetl uses no relative imports)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                 for a in node.names]
    return {n for n in names if n in MODULES}


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def _eager(body: list[ast.stmt]):
    """The statements that run at import time: not function bodies, not `if TYPE_CHECKING:`;
    descending into the bodies of try, if, with and class statements."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if _is_type_checking(node):
            yield from _eager(node.orelse)
            continue
        yield node
        for inner in (getattr(node, "body", []), getattr(node, "orelse", []), getattr(node, "finalbody", []),
                      *(h.body for h in getattr(node, "handlers", []))):
            yield from _eager(inner)


def import_graph(deferred: bool = False) -> dict[str, set[str]]:
    """module -> the aetl modules it imports at import time (with deferred=True, also those its
    functions import when called and those it imports for type checking). A module also
    imports its parent packages."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        hidden = set() if deferred else \
            {id(n) for block in ast.walk(tree) if _is_type_checking(block) for n in ast.walk(block)}
        nodes = ast.walk(tree) if deferred else _eager(tree.body)
        edges = set().union(*(imported(n) for n in nodes if isinstance(n, (ast.Import, ast.ImportFrom))
                              and id(n) not in hidden))
        # a package's own submodules import it, not the reverse
        graph[name] = {e for e in edges if e != name and not name.startswith(e + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan), as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def long_functions(paths: list[Path], limit: int = MAX_LINES) -> list[str]:
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                lines = node.end_lineno - first + 1
                if lines > limit:
                    found.append(f"{path.name}:{node.lineno} {node.name} ({lines} lines)")
    return found


def many_parameters(paths: list[Path], limit: int = MAX_PARAMETERS) -> list[str]:
    """Functions that take more than `limit` named parameters (self and cls aside)."""
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
                names = names[1:] if names[:1] in (["self"], ["cls"]) else names
                if len(names) > limit:
                    found.append(f"{path.name}:{node.lineno} {node.name} ({len(names)} parameters)")
    return found


def test_no_function_in_aetl_is_over_60_lines_or_6_parameters():
    assert long_functions(list(MODULES.values())) == []
    assert many_parameters(list(MODULES.values())) == []


def test_the_top_of_aetl_holds_the_package_face_and_at_most_three_modules():
    top = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(top) <= TOP_MODULES, top
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert packages == ["apps", "commands", "data", "evaluation", "infra", "models", "strategies", "training"]


def test_no_import_cycle_among_aetl_modules():
    graph = import_graph()
    assert graph["aetl.commands.train"] and "aetl.training.loop" in graph["aetl.commands.train"]  # read, not empty
    assert cycles(graph) == []


def test_no_cycle_counting_deferred_and_type_checking_imports():
    graph = import_graph(deferred=True)
    assert "aetl.data.storage" in graph["aetl.training.loop"]
    assert cycles(graph) == []


def test_run_state_is_typed_fields_not_a_string_keyed_dict():
    """What a resumed run carries (aetl.infra.resume.RunState) is dataclass fields: a misspelt
    name is an error, not a silently missing entry."""
    import dataclasses
    import typing

    from aetl.infra.resume import CandidateTime, Provenance, RunState

    for kind in (RunState, Provenance, CandidateTime):
        hints = typing.get_type_hints(kind)
        assert dataclasses.is_dataclass(kind) and hints
        assert not [n for n, t in hints.items() if "dict" in str(t).lower()], kind
    state = RunState(["seed=1"], Provenance(1.5, "cache", "hit", True), 0.5, 2.0, 40, [CandidateTime("scratch", 3.0)])
    assert RunState.from_saved(state.to_saved()) == state


def test_the_infrastructure_imports_nothing_of_the_pipeline():
    """aetl/infra/ (run dirs, resuming, caches, config checks, ...) sits below the method:
    it may import aetl's errors and itself, never data, models, strategies or the loop."""
    graph = import_graph(deferred=True)
    infra = [m for m in graph if m.startswith("aetl.infra")]
    assert len(infra) > 10
    allowed = {"aetl", "aetl.errors"}
    assert {m: sorted(d for d in graph[m] if d not in allowed and not d.startswith("aetl.infra"))
            for m in infra} == {m: [] for m in infra}


def test_the_checks_find_what_they_look_for(tmp_path):
    """The helpers above, on code made to fail them."""
    body = "\n".join(f"    x = {i}" for i in range(MAX_LINES))
    (tmp_path / "long.py").write_text(f"def long():\n{body}\n\n\ndef short():\n    pass\n")
    assert [f.split()[-3] for f in long_functions([tmp_path / "long.py"], limit=MAX_LINES)] == ["long"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


# --- tests that start processes carry the slow marker -------------------------------------

def _spawns(call: ast.Call) -> bool:
    """subprocess.run/Popen/check_*, or a multiprocessing Process."""
    f = call.func
    if not isinstance(f, ast.Attribute):
        return False
    return f.attr in ("Popen", "Process") or \
        (f.attr in ("run", "check_output", "check_call") and ast.unparse(f.value) == "subprocess")


def _calls(fn: ast.AST) -> set[str]:
    """The plain names fn calls, and "<spawn>" when it starts a process itself."""
    calls = [n for n in ast.walk(fn) if isinstance(n, ast.Call)]
    return {"<spawn>" for c in calls if _spawns(c)} | {c.func.id for c in calls if isinstance(c.func, ast.Name)}


def _spawning_helpers(trees: list[ast.Module]) -> set[str]:
    """Names of module-level helpers that start a process, directly or through another helper."""
    calls = {fn.name: _calls(fn) for tree in trees for fn in tree.body if isinstance(fn, ast.FunctionDef)
             and not fn.name.startswith("test_")}
    spawning = {name for name, c in calls.items() if "<spawn>" in c}
    while True:
        more = {name for name, c in calls.items() if c & spawning} - spawning
        if not more:
            return spawning
        spawning |= more


def _marked_slow(node: ast.AST) -> bool:
    return any("slow" in ast.unparse(d) for d in getattr(node, "decorator_list", []))


def unmarked_spawning_tests(files: list[Path], conftest: Path) -> list[str]:
    shared = ast.parse(conftest.read_text())
    found = []
    for path in files:
        tree = ast.parse(path.read_text())
        module_slow = any(isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in n.targets)
                          and "slow" in ast.unparse(n.value) for n in tree.body)
        spawning = _spawning_helpers([shared, tree])
        for fn in tree.body:
            if isinstance(fn, ast.FunctionDef) and fn.name.startswith("test_") and not module_slow \
                    and not _marked_slow(fn) and _calls(fn) & (spawning | {"<spawn>"}):
                found.append(f"{path.name}::{fn.name}")
    return found


def test_tests_that_start_processes_are_marked_slow():
    files = sorted(TESTS.glob("test_*.py"))
    assert len(files) > 20
    assert unmarked_spawning_tests(files, TESTS / "conftest.py") == []


def test_the_slow_check_sees_helpers_and_markers(tmp_path):
    (tmp_path / "conftest.py").write_text("import subprocess\ndef aetl(*a):\n    return subprocess.run(a)\n")
    (tmp_path / "test_x.py").write_text(
        "import multiprocessing, pytest\n"
        "def hold():\n    return multiprocessing.get_context('spawn').Process(target=print)\n"
        "def test_a():\n    aetl('train')\n"
        "def test_b():\n    hold()\n"
        "@pytest.mark.slow\ndef test_c():\n    aetl('train')\n"
        "def test_d():\n    print('no process')\n")
    found = unmarked_spawning_tests([tmp_path / "test_x.py"], tmp_path / "conftest.py")
    assert found == ["test_x.py::test_a", "test_x.py::test_b"]


def test_the_parameter_check_counts_what_it_should(tmp_path):
    (tmp_path / "m.py").write_text("def f(a, b, c, d, e, f, g):\n    pass\n\n\nclass C:\n"
                                   "    def m(self, a, b, c, d, e, f):\n        pass\n\n"
                                   "    def n(self, a, *, b, c, d, e, f, g, **kw):\n        pass\n")
    assert [f.split()[1] for f in many_parameters([tmp_path / "m.py"])] == ["f", "n"]
