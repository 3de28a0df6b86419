"""The package's shape: no import circle between its modules; every error type in errors.py."""

import ast
import re
from pathlib import Path

import audioscene

ROOT = Path(audioscene.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules `path` imports when it is loaded: module-level statements, those under
    `if TYPE_CHECKING:` included (they are a circle for a reader and a type checker), not the
    imports inside functions (loaded lazily, on purpose)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    statements = list(ast.parse(path.read_text()).body)
    while statements:
        node = statements.pop()
        if isinstance(node, ast.If):
            statements += node.body + node.orelse
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = ".".join(p for p in (base if node.level else "", node.module or "") if p)
            for alias in node.names:
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {m for m in found if m in modules and m != name}


def test_no_module_imports_itself_through_others():
    paths = sorted(ROOT.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    graph = {_module_name(p): _imports(p, modules) for p in paths}
    # a package's __init__ re-exporting its own modules is the package's face, not a circle
    edges = {m: {t for t in targets if not (m.startswith(t + ".") and t in graph)} for m, targets in graph.items()}
    circles = []
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                circles.append(trail[trail.index(target):] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_every_error_type_lives_in_errors_py():
    """One home for the error types (each module raises the class of its concept from there)."""
    defined = {}
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                    getattr(base, "id", getattr(base, "attr", "")).endswith(("Error", "Exception")) for base in node.bases):
                defined[node.name] = path.relative_to(ROOT).as_posix()
    assert len(defined) >= 16 and set(defined.values()) == {"errors.py"}, defined


def test_the_cli_reports_user_errors_in_one_line_and_keeps_a_bugs_traceback(tmp_path, monkeypatch):
    import pytest
    from helpers import assert_one_line_error, run_cli

    from audioscene import errors
    from audioscene.cli.commands import synth

    (tmp_path / "a_file").write_text("")
    # a folder the user names that cannot be made: the user's to fix, one line naming it
    assert_one_line_error(run_cli("synth", "--out", str(tmp_path / "a_file" / "set"), "--n-clips", "1"),
                          "a_file/set/audio: cannot create this folder")
    assert all(issubclass(cls, ValueError) for cls in (errors.AudioError, errors.InputError, errors.ConfigError))

    def buggy(args):
        open(tmp_path / "missing" / "scratch.bin", "rb")  # an OSError no user input caused

    monkeypatch.setattr(synth, "run", buggy)
    with pytest.raises(FileNotFoundError):  # propagates with its traceback, not one polite line
        run_cli("synth", "--out", str(tmp_path / "s"))


# --- the layers of docs/architecture.md -------------------------------------------------------------

ARCHITECTURE = ROOT.parent.parent / "docs" / "architecture.md"
# (importer, imported) → why an import from a lower layer to a higher one is allowed
UPWARD_ALLOWED: dict[tuple[str, str], str] = {}


def _layers() -> dict[str, int]:
    """Module or package name (without `audioscene.`) → its layer, from the page's layer table."""
    layers = {}
    for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines():
        row = re.match(r"\| (\d) [^|]*\| ([^|]*) \|", line)
        if row:
            layers.update({name: int(row.group(1)) for name in re.findall(r"`([\w.]+)`", row.group(2))})
    return layers


def _layer_of(module: str, layers: dict[str, int]) -> int | None:
    name = module.removeprefix("audioscene.")
    while name not in layers and "." in name:  # a module of a package is in its package's layer
        name = name.rpartition(".")[0]
    return layers.get(name)


def _every_import(path: Path, modules: set[str]) -> set[str]:
    """The package modules `path` imports anywhere: at module level and inside functions."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = ".".join(p for p in (base if node.level else "", node.module or "") if p)
            found |= {f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {m for m in found if m in modules and m != name}


def test_imports_go_down_the_layers_of_the_architecture_page():
    layers = _layers()
    paths = sorted(ROOT.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    unplaced = sorted(m for m in modules - {"audioscene"} if _layer_of(m, layers) is None)
    assert not unplaced, f"modules docs/architecture.md's layer table does not place: {unplaced}"
    upward = [f"{m} (layer {_layer_of(m, layers)}) imports {t} (layer {_layer_of(t, layers)})"
              for p in paths for m in [_module_name(p)] if m != "audioscene"
              for t in sorted(_every_import(p, modules))
              if t != "audioscene" and _layer_of(t, layers) > _layer_of(m, layers) and (m, t) not in UPWARD_ALLOWED]
    assert not upward, "imports from a lower layer to a higher one: " + "; ".join(upward)


def test_the_architecture_page_names_only_what_exists():
    """Every module, attribute and file the page names in backticks is there."""
    import importlib

    text = ARCHITECTURE.read_text(encoding="utf-8")
    layers = _layers()
    missing = []
    for reference in re.findall(r"`@?([A-Za-z_][\w./]*)", text):
        if reference.endswith(".py") or (reference.endswith(".md") and "/" in reference):  # a file of ours
            if not any((base / reference).exists() for base in (ROOT.parent.parent, ROOT)):
                missing.append(reference)
            continue
        first = reference.split(".")[0]
        if (first not in layers or first == "__main__" or "/" in reference
                or reference.endswith((".csv", ".pt", ".json", ".md"))):
            continue  # not a reference into the package (files a run or a report holds)
        parts = reference.split(".")
        for known in range(len(parts), 0, -1):  # the longest prefix that is a module, then attributes
            try:
                target = importlib.import_module("audioscene." + ".".join(parts[:known]))
                break
            except ModuleNotFoundError:
                continue
        for attribute in parts[known:]:
            target = getattr(target, attribute, None)
            if target is None:
                missing.append(reference)
                break
    assert not missing, f"docs/architecture.md names what does not exist: {missing}"


def test_no_function_is_longer_than_60_lines():
    """Past 60 lines a function does several things; argparse declarations (a command's
    `arguments`) are lists of options and may run longer."""
    long = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                if not (path.parent.name == "commands" and node.name == "arguments"):
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})")
    assert not long, long
