"""What an install brings: runtime dependencies without test tools, the benchmarks' peers in the bench extra."""

import ast
import sys
import tomllib

from support import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TEST_TOOLS = {"pytest", "pytest-timeout", "playwright", "nbclient", "nbformat", "ipykernel", "psutil"}


def names(requirements: list[str]) -> set[str]:
    return {req.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].split("~")[0].strip().lower()
            for req in requirements}


def test_runtime_dependencies_exclude_test_tools():
    runtime = names(PYPROJECT["project"]["dependencies"])
    assert not runtime & TEST_TOOLS, runtime & TEST_TOOLS
    assert {"pytest", "nbclient", "ipykernel"} <= names(PYPROJECT["project"]["optional-dependencies"]["dev"])


def test_every_package_the_benchmarks_import_is_installed_by_the_runtime_or_the_bench_extra():
    imported = set()
    for script in (ROOT / "benchmarks").glob("*.py"):
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    local = {path.stem for path in (ROOT / "benchmarks").glob("*.py")} | {"studyllm_core", "studyllm_pipeline"}
    third_party = imported - set(sys.stdlib_module_names) - local
    optional = PYPROJECT["project"]["optional-dependencies"]
    declared = names(PYPROJECT["project"]["dependencies"]) | names(optional["bench"])
    module_of = {"scikit-learn": "sklearn", "k-llmmeans": "k_llmmeans", "psycopg[binary]": "psycopg"}
    modules = {module_of.get(name, name.replace("-", "_")) for name in declared}
    assert third_party <= modules, third_party - modules
    assert "k_llmmeans" in third_party  # the peer that was declared nowhere
