"""The layers of docs/architecture.md, enforced: the core never imports Dagster, and the CLI and the
pipeline reach the database, the providers and the algorithms only through services."""

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import studyllm_core

ROOT = Path(studyllm_core.__file__).resolve().parent.parent

# What the two front layers (the `studyllm` CLI and the Dagster pipeline) may import from the core:
# the services, and the cross-cutting pieces every layer uses (settings, errors, logging, secret
# masking, output files, charts, command output, the column dictionary, the data-quality verdicts).
# From `db`, only what opens a connection and manages the server and schema (an engine is what a
# service is given); never a repository, model or SQL. From `providers`, only the error types (the
# CLI maps them to exit codes).
FRONT_MAY_IMPORT = (
    "studyllm_core.services",
    "studyllm_core.config",
    "studyllm_core.errors",
    "studyllm_core.logging_config",
    "studyllm_core.redaction",
    "studyllm_core.files",
    "studyllm_core.charts",
    "studyllm_core.columns",
    "studyllm_core.quality",
    "studyllm_core.output",
    "studyllm_core.progress",
    "studyllm_core.gc_tuning",
    "studyllm_core.process_policy",
    "studyllm_core.providers.errors",
    "studyllm_core.db.engine",
    "studyllm_core.db.server",
    "studyllm_core.db.migrate",
)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function bodies and TYPE_CHECKING blocks too);
    `from package import module` counts as importing the module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _allowed(module: str, extra: tuple[str, ...]) -> bool:
    if not module.startswith("studyllm_core"):
        return True
    if module == "studyllm_core":
        return False
    prefixes = FRONT_MAY_IMPORT + extra
    if any(module == p or module.startswith(p + ".") for p in prefixes):
        return True
    # `from studyllm_core.services.x import Name`: the module is allowed, the name is not a module.
    parent = module.rsplit(".", 1)[0]
    return any(parent == p or parent.startswith(p + ".") for p in prefixes) and not _is_module(module)


def _is_module(dotted: str) -> bool:
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def bad_modules(found: set[str], extra: tuple[str, ...]) -> set[str]:
    """The forbidden modules among `found` (so `from bad import Name` is reported once, as `bad`)."""
    return {m for m in found if not _allowed(m, extra)}


def _violations(folder: str, extra: tuple[str, ...] = ()) -> list[str]:
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        found = _imports(path)
        for module in sorted(found):
            if not _allowed(module, extra) and module.rsplit(".", 1)[0] not in bad_modules(found, extra):
                bad.append(f"{path.relative_to(ROOT)} imports {module}")
    return bad


def test_cli_reaches_storage_providers_and_algorithms_only_through_services():
    assert _violations("studyllm_core/cli", extra=("studyllm_core.cli",)) == []


def test_pipeline_reaches_storage_providers_and_algorithms_only_through_services():
    assert _violations("studyllm_pipeline") == []


def test_the_import_check_sees_a_bypass(tmp_path):
    """The check itself: a repository imported in a function body is found."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from studyllm_core.db.groups import GroupRepository\n")
    assert "studyllm_core.db.groups" in _imports(probe)
    assert not _allowed("studyllm_core.db.groups", ())
    assert not _allowed("studyllm_core.algorithms", ())
    assert _allowed("studyllm_core.services.provenance.ProvenanceService", ())


def test_core_never_imports_dagster():
    modules = [m.name for m in pkgutil.walk_packages(studyllm_core.__path__, "studyllm_core.") if ".migrations" not in m.name]
    assert "studyllm_core.db.calls" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.') or m.startswith('dagster_'))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
