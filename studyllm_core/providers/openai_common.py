"""Pieces shared by the two OpenAI-style transports: httpx (`openai_http`) and the SDK (`openai_sdk`).

Settings checks, the per-event-loop client, secrets/repr and the "pass model=" check live here
once, so the two families cannot drift apart. This module must not import the OpenAI SDK: the
httpx providers stay free of its import cost.
"""

from __future__ import annotations

import asyncio
import math
import os
from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

from studyllm_core.providers.errors import AuthenticationError, BadRequestError, ConfigurationError
from studyllm_core.redaction import mask

EMBEDDING_ENCODINGS = ("float", "base64")

ClientT = TypeVar("ClientT")


class OpenAIClientMixin(Generic[ClientT]):
    """Mixin for a provider holding one API client, rebuilt when used from a new event loop.

    The provider sets the class settings below plus `_api_key`, `base_url` and `timeout`,
    implements `_make_client`, and calls `_init_client()` at the end of `__init__`.
    """

    name: ClassVar[str]
    api_key_env: ClassVar[str]
    api_key_required: ClassVar[bool]
    default_base_url: ClassVar[str | None]
    _api_key: str | None
    base_url: str
    timeout: float
    _client: ClientT
    _client_loop: asyncio.AbstractEventLoop | None

    def _make_client(self) -> ClientT:
        """A new client built from the provider's settings."""
        raise NotImplementedError

    def _init_client(self) -> None:
        """Build the client now (so bad settings fail at construction), bound to no loop yet."""
        self._client = self._make_client()
        self._client_loop = None

    def _client_for_loop(self) -> ClientT:
        """The client bound to the running event loop (a new one if the provider outlived its loop)."""
        loop = asyncio.get_running_loop()
        if self._client_loop is None:
            self._client_loop = loop
        elif self._client_loop is not loop:
            self._client, self._client_loop = self._make_client(), loop
        return self._client

    def _client_closable(self) -> bool:
        """Whether the current client may be closed here (unused, or bound to the running loop)."""
        return self._client_loop in (None, asyncio.get_running_loop())

    def secrets(self) -> list[str]:
        """Values that must never appear in messages: passed to `redact`."""
        return [self._api_key] if self._api_key else []

    def endpoint(self) -> str | None:
        """The base URL requests go to (recorded with every call)."""
        return self.base_url

    def embedding_server(self) -> str | None:
        """The server, when it belongs to the embedding space: any base URL but the vendor's own API."""
        if self.default_base_url and self.base_url == self.default_base_url.rstrip("/"):
            return None
        return normalize_server_url(self.base_url)

    def __repr__(self) -> str:
        """The class, base URL and timeout, with the API key masked."""
        return f"{type(self).__name__}(base_url={self.base_url!r}, api_key={mask(self._api_key)}, timeout={self.timeout})"


def check_openai_settings(
    provider: OpenAIClientMixin[Any],
    *,
    api_key: str | None,
    base_url: str | None,
    base_url_env: str,
    embedding_encoding: str | None,
    encoding_may_be_none: bool,
) -> str:
    """Check the key, base URL (or the provider's default) and encoding; return the URL without a trailing slash.

    `encoding_may_be_none` is the one difference between the families: the httpx providers may
    leave `encoding_format` to the server (None), the SDK providers always send one.
    """
    name = provider.name
    if provider.api_key_required and not api_key:
        raise AuthenticationError(
            f"{name} provider needs an API key: set {provider.api_key_env} (or pass api_key=...)", provider=name
        )
    base_url = base_url or provider.default_base_url
    if not base_url:
        raise ConfigurationError(
            f"{name} provider needs a base URL: set {base_url_env} (or pass base_url=...)", provider=name
        )
    check_base_url(base_url, name, base_url_env)
    allowed = (None, *EMBEDDING_ENCODINGS) if encoding_may_be_none else EMBEDDING_ENCODINGS
    if embedding_encoding not in allowed:
        raise ConfigurationError(f"embedding_encoding must be 'float' or 'base64', got {embedding_encoding!r}")
    return base_url.rstrip("/")


def require_model(model: object, provider_name: str) -> None:
    """Raise BadRequestError unless `model` is a non-empty str."""
    if not model or not isinstance(model, str):
        raise BadRequestError(f"{provider_name}: pass model='...' (the model name to call)", provider=provider_name)


def check_base_url(url: str, provider: str, env: str) -> None:
    """ConfigurationError unless `url` is an http(s) URL with a host (before any request is made)."""
    where = f"--base-url or {env}" if env else "--base-url"
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # ValueError for a port that is not a number
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        scheme = parts.scheme if parts is not None else ""
        if parts is not None and not parts.netloc and scheme.lower() not in ("http", "https", "ftp", "file"):
            hint = f"it has no http:// or https:// scheme; use e.g. http://{url.strip().split('://')[-1]}"
        elif scheme and scheme.lower() not in ("http", "https"):
            hint = f"its scheme is {scheme}://, but the API speaks http:// or https://"
        else:
            hint = "it names no host; use e.g. http://localhost:8000/v1"
        raise ConfigurationError(f"{provider} base URL {url!r} is not usable: {hint} ({where})", provider=provider)
    del port


def normalize_server_url(url: str) -> str:
    """A server URL in one spelling: scheme and host lower-cased, default port and trailing slash dropped."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"  # IPv6
    port = parts.port
    netloc = host if port is None or (scheme, port) in (("http", 80), ("https", 443)) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


def check_timeout(timeout: object, provider: str) -> float:
    """The request timeout in seconds as a float; ConfigurationError unless it is a finite number above 0."""
    try:
        value = float(timeout)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigurationError(
            f"{provider} timeout must be a number of seconds above 0, got {timeout!r} (--timeout or STUDYLLM_REQUEST_TIMEOUT)",
            provider=provider,
        )
    return value


def connect_reason(exc: BaseException) -> str:
    """Why a connection could not be made, in a few words ("connection refused", "name or service not known")."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno:
            return os.strerror(cause.errno).lower()
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
        cause = cause.__cause__ or cause.__context__
    text = str(exc).strip()
    if "]" in text:  # "[Errno 111] Connection refused"
        text = text.split("]", 1)[1].strip()
    return (text or type(exc).__name__).lower()
