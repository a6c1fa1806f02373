"""Drive an OpenAI stub server from another process: an admin client over HTTP and a subprocess launcher.

Benchmarks and subprocess tests use these to set faults and read stats of a server they did not
start in-process (stdlib only: urllib and subprocess).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class StubAdminClient:
    """The /_admin endpoints of a stub server at `base_url` (with or without the trailing /v1)."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        url = base_url.rstrip("/")
        self.root_url = url[: -len("/v1")] if url.endswith("/v1") else url
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else (b"{}" if method == "POST" else None)
        req = urllib.request.Request(
            self.root_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - loopback test server
            return json.loads(resp.read())

    def stats(self, *, include_texts: bool = True) -> dict[str, Any]:
        return self._call("GET", "/_admin/stats" + ("" if include_texts else "?texts=0"))

    def faults(self) -> dict[str, Any]:
        return self._call("GET", "/_admin/faults")

    def set_faults(self, **config: Any) -> dict[str, Any]:
        """POST /_admin/faults with `config` (FaultConfig fields and/or fail_next)."""
        return self._call("POST", "/_admin/faults", config)

    def fail_next(self, n: int, kind: str, *, endpoint: str | None = None) -> dict[str, Any]:
        return self.set_faults(fail_next={"n": n, "kind": kind, "endpoint": endpoint})

    def reset(self, *, stats: bool = True, faults: bool = True) -> dict[str, Any]:
        return self._call("POST", "/_admin/reset", {"stats": stats, "faults": faults})


@contextmanager
def stub_server_process(*args: str, startup_timeout: float = 30.0) -> Iterator[tuple[str, StubAdminClient]]:
    """Run `python -m studyllm_core.testing.openai_server --port 0 ARGS...`; yield (base_url, admin)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "studyllm_core.testing.openai_server", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(startup_timeout)
        if not line or not line[0].startswith("http"):
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise RuntimeError(f"stub server did not start: {err.strip()[-500:]}")
        base_url = line[0].strip()
        yield base_url, StubAdminClient(base_url)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
