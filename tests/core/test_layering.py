"""`studyllm_core` works without Dagster: importing every core module never imports dagster."""

import pkgutil
import subprocess
import sys

import studyllm_core


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
