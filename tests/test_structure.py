"""The package's shape: no import circle between its modules; every error type in errors.py."""

import ast
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
    from audioscene.cli import commands

    (tmp_path / "a_file").write_text("")
    # a folder the user names that cannot be made: the user's to fix, one line naming it
    assert_one_line_error(run_cli("synth", "--out", str(tmp_path / "a_file" / "set"), "--n-clips", "1"),
                          "a_file/set/audio: cannot create this folder")
    assert all(issubclass(cls, ValueError) for cls in (errors.AudioError, errors.InputError, errors.ConfigError))

    def buggy(args):
        open(tmp_path / "missing" / "scratch.bin", "rb")  # an OSError no user input caused

    monkeypatch.setattr(commands, "synth", buggy)
    with pytest.raises(FileNotFoundError):  # propagates with its traceback, not one polite line
        run_cli("synth", "--out", str(tmp_path / "s"))
