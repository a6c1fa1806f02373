"""Process-wide policy (the Hugging Face libraries' offline switches, pausing and freezing the garbage
collector) is the entry points' to set: loading the local model from a library leaves the process as it
was and still asks no server anything; `studyllm` and the Dagster code location apply the policy."""

import subprocess
import sys

import pytest

PROBE_LOCAL = """
import asyncio, gc, os, sys
connects = []
sys.addaudithook(lambda event, args: connects.append(args[1]) if event == "socket.connect" else None)
for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS"):
    os.environ.pop(name, None)
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"  # were the hub asked anything, it would be here
before = dict(os.environ)
from studyllm_core.providers.registry import create_provider
vectors = asyncio.run(create_provider("local").embed(["a text"], model="all-MiniLM-L6-v2")).vectors
assert vectors.shape == (1, 384), vectors.shape
changed = sorted(k for k in set(os.environ) | set(before) if os.environ.get(k) != before.get(k))
assert not [k for k in changed if k.startswith(("HF_", "TRANSFORMERS_"))], changed  # torch sets its own (KMP_*)
assert gc.isenabled() and gc.get_freeze_count() == 0, gc.get_freeze_count()
assert not connects, connects
"""


@pytest.mark.torch
def test_loading_the_local_model_leaves_the_process_alone_and_stays_offline():
    result = subprocess.run([sys.executable, "-c", PROBE_LOCAL], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


PROBE_CLI = """
import gc, os, sys
for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.pop(name, None)
import studyllm_core.cli as cli
from studyllm_core import gc_tuning

def fake_main(argv=None):
    assert os.environ["HF_HUB_OFFLINE"] == os.environ["TRANSFORMERS_OFFLINE"] == "1"
    with gc_tuning.heavy_imports():
        assert not gc.isenabled()  # the console script paused the collector for heavy imports
    return 0

cli.main = fake_main
cli.run()
"""

PROBE_CODE_LOCATION = """
import gc, os
for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.pop(name, None)
import studyllm_pipeline.definitions
from studyllm_core import gc_tuning
assert os.environ["HF_HUB_OFFLINE"] == os.environ["TRANSFORMERS_OFFLINE"] == "1"
with gc_tuning.heavy_imports():
    assert not gc.isenabled()
"""

PROBE_LIBRARY = """
import gc, os, pkgutil, importlib
for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.pop(name, None)
import studyllm_core
for m in pkgutil.walk_packages(studyllm_core.__path__, "studyllm_core."):
    if ".migrations" not in m.name:
        importlib.import_module(m.name)
from studyllm_core import gc_tuning
assert "HF_HUB_OFFLINE" not in os.environ and "TRANSFORMERS_OFFLINE" not in os.environ
with gc_tuning.heavy_imports():
    assert gc.isenabled()  # a notebook's collector is its own
"""


@pytest.mark.parametrize("probe", [PROBE_CLI, PROBE_CODE_LOCATION, PROBE_LIBRARY], ids=["studyllm", "code-location", "library"])
def test_entry_points_apply_the_policy_and_libraries_do_not(probe):
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
