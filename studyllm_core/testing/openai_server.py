"""A loopback OpenAI-compatible HTTP server with switchable faults, for tests and benchmarks (stdlib and numpy).

In-process::

    with OpenAIStubServer(latency_s=0.05, dim=32) as srv:
        client = AsyncOpenAI(base_url=srv.base_url, api_key="k")
        srv.faults.fail_next(2, "rate_limit")
        srv.stats.snapshot()

As a process (prints its base URL, e.g. http://127.0.0.1:PORT/v1, on the first line of stdout)::

    python -m studyllm_core.testing.openai_server --port 0 --latency 0.05 --dim 64

Endpoints: POST /v1/chat/completions, POST /v1/embeddings, GET /v1/models, and Azure-style
POST /openai/deployments/{deployment}/chat/completions|embeddings?api-version=... .
Admin (not counted, never faulted): GET /_admin/stats[?texts=0] (with requests_in_flight and
requests_in_flight_peak: the most non-admin requests received and not yet answered at once),
GET|POST /_admin/faults (JSON body: any FaultConfig fields, plus "fail_next"), POST /_admin/reset
(body optional: {"stats": true, "faults": true}).

Embeddings are deterministic: a Gaussian vector seeded by sha256(model, text) (`stub_embeddings`: counter-based,
a batch at a time in numpy), L2-normalised, so the same text always gets the same vector (`dimensions` takes a
prefix, renormalised). With `vectors="blobs"` (`--vectors blobs`), a text "c17 ..." gets a vector near blob 17
(blob_embedding): labelled blobs through the real embedding path. Chat answers "stub reply: <last user message>"
with word-count token usage, or one of the model's canned replies when FaultConfig.replies names the model.
"""

from __future__ import annotations

import argparse
import base64
import email.utils
import functools
import hashlib
import json
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from studyllm_core.testing.faults import EMBEDDING_ONLY_KINDS, Faults, Stats

DEFAULT_MODELS = ("stub-chat", "stub-embedding")
_AZURE_PATH = re.compile(r"^/openai/deployments/([^/]+)/(chat/completions|embeddings)$")
_REPLY_CHARS = 200
VECTOR_MODES = ("random", "blobs")


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _seeds(model: str, texts: list[str]) -> np.ndarray:
    """One uint64 seed per text: the first 8 bytes of sha256(model, NUL, text)."""
    prefix = hashlib.sha256(f"{model}\0".encode())
    digests = []
    for text in texts:
        h = prefix.copy()
        h.update(text.encode("utf-8", "surrogatepass"))
        digests.append(h.digest()[:8])
    return np.frombuffer(b"".join(digests), dtype=">u8").astype(np.uint64)


def stub_embeddings(model: str, texts: list[str], dim: int) -> np.ndarray:
    """The vectors the server returns for `texts` at `dim` dimensions, as an (n, dim) float64 matrix.

    Component j of a text's vector is a standard normal drawn by Box-Muller from splitmix64(seed, j)
    (a counter-based generator: the whole batch is a few numpy operations, so the server is never
    the bottleneck of a benchmark), and the row is L2-normalised. A smaller `dim` is a prefix of a
    larger one, renormalised.
    """
    seeds = _seeds(model, texts)[:, None]
    with np.errstate(over="ignore"):
        z = seeds + (np.arange(1, dim + 1, dtype=np.uint64) * _GOLDEN)[None, :]
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z ^= z >> np.uint64(31)
    u1 = ((z >> np.uint64(32)).astype(np.float64) + 0.5) / 2.0**32
    u2 = ((z & np.uint64(0xFFFFFFFF)).astype(np.float64) + 0.5) / 2.0**32
    v = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms > 0, norms, 1.0)


def stub_embedding(model: str, text: str, dim: int) -> list[float]:
    """The vector the server returns for (model, text) at `dim` dimensions."""
    return stub_embeddings(model, [text], dim)[0].tolist()


_BLOB_TEXT = re.compile(r"^c(\d+)\b")
BLOB_SIBLINGS, BLOB_CHILD_COS, BLOB_SPREAD = 4, 0.75, (1.2, 2.0)


@functools.lru_cache(maxsize=4096)
def blob_centre(model: str, centre: int, dim: int) -> tuple[np.ndarray, float]:
    """Mean direction and noise scale of blob `centre`: siblings (centre // BLOB_SIBLINGS) sit at cosine
    BLOB_CHILD_COS to a shared parent direction, so they overlap; the noise scale is drawn from BLOB_SPREAD."""
    key = int.from_bytes(hashlib.sha256(model.encode()).digest()[:4], "big")
    parent = np.random.default_rng([key, centre // BLOB_SIBLINGS, 0]).standard_normal(dim)
    parent /= np.linalg.norm(parent)
    rng = np.random.default_rng([key, centre, 1])
    side = rng.standard_normal(dim)
    side -= (side @ parent) * parent
    mean = BLOB_CHILD_COS * parent + np.sqrt(1 - BLOB_CHILD_COS**2) * side / np.linalg.norm(side)
    return mean, float(rng.uniform(*BLOB_SPREAD))


def blob_embedding(model: str, text: str, dim: int) -> list[float] | None:
    """The "blobs" vector of a text naming its blob ("c17 item 123456" -> blob 17): the blob's mean
    direction plus Gaussian noise seeded by sha256(model, text), L2-normalised; None for other texts.
    Labelled data through the real embedding path: the blob number is the reference label."""
    found = _BLOB_TEXT.match(text)
    if found is None or dim < 2:
        return None
    mean, spread = blob_centre(model, int(found.group(1)), dim)
    seed = int.from_bytes(hashlib.sha256(f"{model}\0{text}".encode()).digest()[:8], "big")
    v = mean + spread / np.sqrt(dim) * np.random.default_rng(seed).standard_normal(dim)
    return (v / np.linalg.norm(v)).tolist()


def stub_reply(messages: list[dict[str, Any]], canned: list[str] | None = None) -> str:
    """The chat answer for `messages`: derived from the last user message only; with `canned` replies
    (the model's in FaultConfig.replies), the one a hash of that message picks."""
    last = ""
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            last = content if isinstance(content, str) else json.dumps(content)
    if canned:
        return canned[int.from_bytes(hashlib.sha256(last.encode()).digest()[:8], "big") % len(canned)]
    return "stub reply: " + " ".join(last.split())[:_REPLY_CHARS]


def _words(messages: list[dict[str, Any]]) -> int:
    return sum(len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict))


def _error_body(message: str, *, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


_HANDLER_JOIN_S = 10.0  # how long close() waits for each woken handler thread


def _shutdown_quietly(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    allow_reuse_address = True
    stub: OpenAIStubServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # the client went away (timeouts, hangs): not the server's problem
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "studyllm-stub/1"
    server: _HTTPServer
    body: bytes = b""
    end_in_flight: Callable[[], None] | None = None  # set while an API request is being handled

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return None

    def setup(self) -> None:
        super().setup()
        self.server.stub._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.stub._track(self.connection, add=False)

    # -- plumbing --------------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        *,
        content_type: str = "application/json",
        drip_s: float | None = None,
    ) -> None:
        """Answer; with `drip_s`, the body goes out one byte every `drip_s` seconds (a slow server)."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        if self.end_in_flight is not None and drip_s is None:
            self.end_in_flight()  # before the answer goes out: the client cannot see it still counted
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if drip_s is None:
                self.wfile.write(data)
                return
            self.wfile.flush()
            for i in range(len(data)):
                if self.server.stub._closing.wait(drip_s):
                    break
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
        except OSError:
            self.close_connection = True
            self.server.stub.stats.record_dropped()

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json(self) -> Any:
        """The request body as JSON ({} if empty); ValueError if it is not JSON."""
        return json.loads(self.body) if self.body else {}

    def _api_key(self) -> str:
        auth = self.headers.get("Authorization") or ""
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return (self.headers.get("api-key") or "").strip()

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self.server.stub._handle(self, "GET")

    def do_POST(self) -> None:  # noqa: N802
        self.server.stub._handle(self, "POST")


class OpenAIStubServer:
    """The server; start with `with OpenAIStubServer(...) as srv:` or `start()`/`close()`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_s: float = 0.0,
        dim: int = 32,
        api_keys: list[str] | None = None,
        models: list[str] | None = None,
        seed: int = 0,
        hang_s: float = 30.0,
        vectors: str = "random",
    ) -> None:
        if vectors not in VECTOR_MODES:
            raise ValueError(f"vectors={vectors!r}: use one of {', '.join(VECTOR_MODES)}")
        self.vectors = vectors  # "blobs": texts naming a blob get blob_embedding vectors
        self.host = host
        self.port = port
        self.dim = int(dim)
        initial: dict[str, Any] = {"latency_s": latency_s, "seed": seed, "hang_s": hang_s}
        if api_keys is not None:
            initial["valid_keys"] = list(api_keys)
        if models is not None:
            initial["known_models"] = list(models)
        self.faults = Faults(**initial)
        self.stats = Stats()
        self._closing = threading.Event()
        self._conns: set[socket.socket] = set()
        self._handlers: set[threading.Thread] = set()
        self._conns_lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ids = 0
        self.last_request: dict[str, Any] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> OpenAIStubServer:
        httpd = _HTTPServer((self.host, self.port), _Handler)
        httpd.stub = self
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="openai-stub", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, wake hung handlers, drop open connections and wait for the handlers to end.

        When it returns, the serving thread has ended and no request is in flight any more.
        """
        self._closing.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join()
        with self._conns_lock:
            conns, self._conns = list(self._conns), set()
            handlers = list(self._handlers)
        for conn in conns:
            _shutdown_quietly(conn)
        for thread in handlers:
            if thread is not threading.current_thread():
                thread.join(_HANDLER_JOIN_S)  # woken above; the bound only guards against a wedged handler

    @property
    def serving(self) -> bool:
        """Whether the serving thread is running (False after close())."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> OpenAIStubServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        """Remember a handler's connection and thread while it runs, so close() can end them."""
        thread = threading.current_thread()
        with self._conns_lock:
            if add:
                self._conns.add(conn)
                self._handlers.add(thread)
                late = self._closing.is_set()  # accepted while closing: close() may have missed it
            else:
                self._conns.discard(conn)
                self._handlers.discard(thread)
                late = False
        if late:
            _shutdown_quietly(conn)

    @property
    def root_url(self) -> str:
        """http://HOST:PORT (the Azure endpoint)."""
        return f"http://{self.host}:{self.port}"

    @property
    def azure_endpoint(self) -> str:
        return self.root_url

    @property
    def base_url(self) -> str:
        """http://HOST:PORT/v1 (the OpenAI base URL)."""
        return self.root_url + "/v1"

    def reset(self) -> None:
        """Zero the stats and restore the starting fault configuration."""
        self.stats.reset()
        self.faults.reset()

    def embedding(self, text: str, *, model: str = "stub-embedding", dim: int | None = None) -> list[float]:
        """The vector this server returns for `text` (tests compare against it)."""
        return self._vectors(model, [text], dim or self.dim)[0].tolist()

    def _vectors(self, model: str, texts: list[str], dim: int) -> list[np.ndarray]:
        """stub_embeddings (rows of one matrix), or in "blobs" mode blob_embedding for texts that name a blob."""
        vectors = list(stub_embeddings(model, texts, dim))
        if self.vectors == "blobs":
            for i, text in enumerate(texts):
                blob = blob_embedding(model, text, dim)
                if blob is not None:
                    vectors[i] = np.asarray(blob)
        return vectors

    # -- request handling ----------------------------------------------------------------------

    def _handle(self, h: _Handler, method: str) -> None:
        h.body = h._read_body()  # always, so a keep-alive connection stays in sync whatever the route
        url = urlsplit(h.path)
        path = url.path.rstrip("/") or "/"
        query = parse_qs(url.query)
        if path.startswith("/_admin/"):
            self._admin(h, method, path, query)
            return
        h.end_in_flight = self.stats.start_request()
        try:
            self._route(h, method, path, query)
        finally:
            h.end_in_flight()  # a no-op if _send already ended it
            h.end_in_flight = None

    def _route(self, h: _Handler, method: str, path: str, query: dict[str, list[str]]) -> None:
        azure = _AZURE_PATH.match(path)
        if method == "GET" and path == "/v1/models":
            self.stats.record_request("models")
            self._wait(self.faults.config.latency_s)
            models = self.faults.config.known_models or list(DEFAULT_MODELS)
            h._send(200, {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "stub"} for m in models]})
        elif method == "POST" and path in ("/v1/chat/completions", "/v1/embeddings"):
            kind = "chat" if path.endswith("completions") else "embeddings"
            self._api(h, kind, endpoint=kind, deployment=None)
        elif method == "POST" and azure:
            kind = "chat" if azure.group(2) == "chat/completions" else "embeddings"
            if not query.get("api-version"):
                self.stats.record_request("azure." + kind)
                h._send(400, _error_body("api-version query parameter is required", type_="invalid_request_error", code="MissingApiVersionParameter"))
                return
            self._api(h, kind, endpoint="azure." + kind, deployment=azure.group(1))
        else:
            h._send(404, _error_body(f"no route {method} {path}", type_="invalid_request_error", code="not_found"))

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._closing.wait(seconds)

    def _api(self, h: _Handler, kind: str, *, endpoint: str, deployment: str | None) -> None:
        self.stats.record_request(endpoint)
        # What the last API request looked like (tests check headers and that keys stay out of bodies).
        self.last_request = {"path": h.path, "headers": dict(h.headers.items()), "body": h.body.decode("utf-8", "replace")}
        try:
            body = h._json()
        except ValueError:
            h._send(400, _error_body("request body is not valid JSON", type_="invalid_request_error"))
            return
        if not isinstance(body, dict):
            h._send(400, _error_body("request body must be a JSON object", type_="invalid_request_error"))
            return
        cfg = self.faults.config
        self._wait(cfg.latency_s)
        key = h._api_key()
        if cfg.valid_keys is not None and key not in cfg.valid_keys:
            # Echoes the key on purpose: the worst case for clients' redaction.
            h._send(401, _error_body(f"Incorrect API key provided: {key}", type_="invalid_request_error", code="invalid_api_key"))
            return
        model = deployment or body.get("model") or ""
        texts: list[str] = []
        if kind == "embeddings":
            raw_input = body.get("input")
            texts = [raw_input] if isinstance(raw_input, str) else raw_input
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
                h._send(400, _error_body("input must be a string or a non-empty list of strings", type_="invalid_request_error"))
                return
            self.stats.record_texts_sent(texts)
        fault = self.faults.draw(kind)
        if fault is not None:
            self.stats.record_fault(fault)
            if fault not in EMBEDDING_ONLY_KINDS and self._send_fault(h, fault, key=key, model=model, cfg=cfg):
                return
        if cfg.known_models is not None and model not in cfg.known_models:
            what = "deployment" if deployment else "model"
            h._send(404, _error_body(f"The {what} `{model}` does not exist", type_="invalid_request_error",
                                     code="DeploymentNotFound" if deployment else "model_not_found"))
            return
        if kind == "embeddings" and cfg.reject_dimensions and body.get("dimensions") is not None:
            h._send(400, {"error": {"message": "This model does not support specifying dimensions.",
                                    "type": "invalid_request_error", "param": "dimensions", "code": None}})
            return
        if kind == "embeddings" and cfg.max_input_chars is not None and any(len(t) > cfg.max_input_chars for t in texts):
            h._send(400, {"error": {"message": "This model's maximum context length is 8192 tokens, however you "
                                               "requested 9000 tokens. Please reduce the length of the input.",
                                    "type": "invalid_request_error", "param": "input", "code": "context_length_exceeded"}})
            return
        if kind == "chat":
            self._chat(h, body, model, fault)
        else:
            self._embeddings(h, body, model, texts, fault)

    def _send_fault(self, h: _Handler, fault: str, *, key: str, model: str, cfg: Any) -> bool:
        """Answer with an HTTP-level fault; False for faults that shape a 200 body instead."""
        if fault == "rate_limit":
            if cfg.retry_after_http_date:
                retry_after = email.utils.formatdate(time.time() + cfg.retry_after_s, usegmt=True)
            else:
                retry_after = f"{cfg.retry_after_s:g}"
            h._send(429, _error_body("Rate limit reached (stub)", type_="requests", code="rate_limit_exceeded"),
                    {"Retry-After": retry_after})
        elif fault == "server_error":
            h._send(500, _error_body("The server had an error (stub)", type_="server_error"))
        elif fault == "unavailable":
            h._send(503, _error_body("The server is overloaded (stub)", type_="server_error"))
        elif fault == "hang":
            self._wait(cfg.hang_s)
            h._send(504, _error_body("hung (stub)", type_="server_error"))
        elif fault == "unauthorized":
            h._send(401, _error_body(f"Incorrect API key provided: {key}", type_="invalid_request_error", code="invalid_api_key"))
        elif fault == "unknown_model":
            h._send(404, _error_body(f"The model `{model}` does not exist", type_="invalid_request_error", code="model_not_found"))
        elif fault == "content_filter":
            h._send(400, _error_body("The prompt was filtered (stub)", type_="invalid_request_error", code="content_filter"))
        elif fault == "malformed_json":
            h._send(200, b'{"id": "stub", "object": "list", "data": [{"index": 0, "embedding": [0.1, ')
        elif fault == "html":
            page = b"<!DOCTYPE html><html><head><title>Sign in to the network</title></head><body>Log in</body></html>"
            h._send(200, page, content_type="text/html; charset=utf-8")
        elif fault == "insufficient_quota":
            h._send(429, _error_body(
                "You exceeded your current quota, please check your plan and billing details.",
                type_="insufficient_quota", code="insufficient_quota"))
        elif fault == "context_length":
            h._send(400, _error_body(
                "This model's maximum context length is 8192 tokens, however you requested 9000 tokens "
                "(9000 in your prompt; 0 for the completion). Please reduce your prompt; or completion length.",
                type_="invalid_request_error", code="context_length_exceeded"))
        elif fault == "bad_request":
            h._send(400, _error_body("Invalid request (stub)", type_="invalid_request_error"))
        else:
            return False
        return True

    def _next_id(self) -> int:
        with self._conns_lock:
            self._ids += 1
            return self._ids

    def _chat(self, h: _Handler, body: dict[str, Any], model: str, fault: str | None) -> None:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            h._send(400, _error_body("messages must be a non-empty list", type_="invalid_request_error"))
            return
        reply, finish = stub_reply(messages, (self.faults.config.replies or {}).get(model)), "stop"
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        if isinstance(max_tokens, int) and len(reply.split()) > max_tokens:
            reply, finish = " ".join(reply.split()[:max_tokens]), "length"
        prompt, completion = _words(messages), len(reply.split())
        choices = [] if fault in EMBEDDING_ONLY_KINDS else [
            {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": finish, "logprobs": None}
        ]
        h._send(200, {
            "id": f"chatcmpl-stub-{self._next_id()}",
            "object": "chat.completion",
            "created": 1700000000,
            "model": model,
            "choices": choices,
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }, drip_s=self.faults.config.drip_s if fault == "slow_drip" else None)

    def _embeddings(self, h: _Handler, body: dict[str, Any], model: str, texts: list[str], fault: str | None) -> None:
        dim = self.dim if self.faults.config.ignore_dimensions else body.get("dimensions") or self.dim
        if not isinstance(dim, int) or dim <= 0:
            h._send(400, _error_body("dimensions must be a positive integer", type_="invalid_request_error"))
            return
        vectors = self._vectors(model, texts, dim)
        if fault == "nan":
            vectors[0] = vectors[0].copy()
            vectors[0][0] = float("nan")
        elif fault == "wrong_dim":
            vectors[0] = np.append(vectors[0], 0.0)
        elif fault == "fewer_vectors":
            vectors = vectors[:-1]
        elif fault == "zero_vectors":
            vectors = [np.zeros_like(v) for v in vectors]
        b64 = body.get("encoding_format") == "base64"
        data = []
        for i, v in enumerate(vectors):
            emb: Any = base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") if b64 else v.tolist()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        if self.faults.config.shuffle:
            data.reverse()
        tokens = sum(len(t.split()) for t in texts)
        payload = {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        if fault is None:
            self.stats.record_texts_ok(texts)
        # NaN goes out as the bare token NaN, like a buggy server.
        h._send(200, json.dumps(payload).encode(), drip_s=self.faults.config.drip_s if fault == "slow_drip" else None)

    def _admin(self, h: _Handler, method: str, path: str, query: dict[str, list[str]]) -> None:
        try:
            body = h._json() if method == "POST" else {}
        except ValueError:
            h._send(400, {"error": "body is not valid JSON"})
            return
        try:
            if method == "GET" and path == "/_admin/stats":
                include = query.get("texts", ["1"])[0] not in ("0", "false", "no")
                h._send(200, self.stats.snapshot(include_texts=include))
            elif method == "GET" and path == "/_admin/faults":
                h._send(200, self.faults.snapshot())
            elif method == "POST" and path == "/_admin/faults":
                h._send(200, self.faults.set(**(body or {})))
            elif method == "POST" and path == "/_admin/reset":
                if (body or {}).get("stats", True):
                    self.stats.reset()
                if (body or {}).get("faults", True):
                    self.faults.reset()
                h._send(200, {"ok": True})
            else:
                h._send(404, {"error": f"no admin route {method} {path}"})
        except (ValueError, TypeError, KeyError) as exc:
            h._send(400, {"error": str(exc)})


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGINT/SIGTERM; the first stdout line is its base URL."""
    parser = argparse.ArgumentParser(description="Loopback OpenAI-compatible stub server with switchable faults.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every API request")
    parser.add_argument("--dim", type=int, default=32, help="embedding dimensions when the request gives none")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random-fault RNG")
    parser.add_argument("--hang", type=float, default=30.0, help="seconds a 'hang' fault waits")
    parser.add_argument("--api-key", action="append", dest="api_keys", help="a valid key (repeat); default: any key")
    parser.add_argument("--model", action="append", dest="models", help="a known model (repeat); default: any model")
    parser.add_argument("--vectors", choices=VECTOR_MODES, default="random",
                        help="blobs: a text 'cN ...' gets a vector near blob N (labelled data); default random")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with OpenAIStubServer(
        host=args.host, port=args.port, latency_s=args.latency, dim=args.dim, seed=args.seed,
        hang_s=args.hang, api_keys=args.api_keys, models=args.models, vectors=args.vectors,
    ) as srv:
        print(srv.base_url, flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
