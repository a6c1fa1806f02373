"""Provider settings from the environment and a `.env` file, and `provider_from_env` to build one.

Real environment variables win over `.env` (python-dotenv, read without touching os.environ).
A missing required variable fails here, naming the variable, before any network call.
Keys never show in `repr()`; see `.env.example` for every variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from studyllm_core.providers.base import Provider
from studyllm_core.providers.errors import ConfigurationError, MissingKeyError
from studyllm_core.redaction import MASK, redact  # noqa: F401 - re-exported: every error message passes through it
from studyllm_core.providers.registry import accepted_settings, create_provider, normalize_name, provider_class

REQUEST_TIMEOUT_ENV = "STUDYLLM_REQUEST_TIMEOUT"
DEFAULT_REQUEST_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class EnvVar:
    """One environment variable and the provider setting it fills."""

    name: str
    setting: str
    required: bool = False
    secret: bool = False
    help: str = ""


PROVIDER_ENV: dict[str, tuple[EnvVar, ...]] = {
    "openai": (
        EnvVar("OPENAI_API_KEY", "api_key", required=True, secret=True, help="OpenAI API key (sk-...)"),
        EnvVar("OPENAI_BASE_URL", "base_url", help="default https://api.openai.com/v1"),
        EnvVar("OPENAI_ORG_ID", "organization", help="optional OpenAI organization id"),
        EnvVar("OPENAI_PROJECT_ID", "project", help="optional OpenAI project id"),
    ),
    "openai-compatible": (
        EnvVar(
            "OPENAI_COMPATIBLE_BASE_URL",
            "base_url",
            required=True,
            help="server speaking OpenAI's API, e.g. http://localhost:8000/v1 (vLLM), http://localhost:11434/v1 (Ollama)",
        ),
        EnvVar("OPENAI_COMPATIBLE_API_KEY", "api_key", secret=True, help="only if the server checks a key"),
    ),
    "azure": (
        EnvVar("AZURE_OPENAI_API_KEY", "api_key", required=True, secret=True, help="Azure OpenAI resource key"),
        EnvVar("AZURE_OPENAI_ENDPOINT", "endpoint", required=True, help="https://YOUR-RESOURCE.openai.azure.com"),
        EnvVar("AZURE_OPENAI_API_VERSION", "api_version", help="default 2024-10-21"),
        EnvVar(
            "AZURE_OPENAI_DEPLOYMENT",
            "deployment",
            help="one deployment for every call, or model=deployment,model2=deployment2; unset: the model name is the deployment",
        ),
    ),
    "hyperbolic": (
        EnvVar("HYPERBOLIC_API_KEY", "api_key", required=True, secret=True, help="Hyperbolic API key"),
        EnvVar("HYPERBOLIC_BASE_URL", "base_url", help="default https://api.hyperbolic.xyz/v1"),
    ),
    "local": (EnvVar("STUDYLLM_LOCAL_DEVICE", "device", help="torch device for the local embedder, default cpu"),),
    "extractive": (),
}


def env_prefix(name: str) -> str:
    """`my-provider` -> `MY_PROVIDER`: third-party providers read MY_PROVIDER_API_KEY and MY_PROVIDER_BASE_URL."""
    return normalize_name(name).upper().replace("-", "_")


def env_vars_for(name: str) -> tuple[EnvVar, ...]:
    """The variables a provider reads (generic `<NAME>_API_KEY`/`<NAME>_BASE_URL` for third-party ones)."""
    key = normalize_name(name)
    if key in PROVIDER_ENV:
        return PROVIDER_ENV[key]
    prefix = env_prefix(key)
    return (EnvVar(f"{prefix}_API_KEY", "api_key", secret=True), EnvVar(f"{prefix}_BASE_URL", "base_url"))


def read_environment(dotenv_path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables of `environ` (default os.environ) over those of `.env` (default: `.env` in the cwd, if any)."""
    path = Path(dotenv_path) if dotenv_path is not None else Path.cwd() / ".env"
    from_file = {k: v for k, v in dotenv_values(path).items() if v is not None} if path.is_file() else {}
    return {**from_file, **(os.environ if environ is None else environ)}


@dataclass(frozen=True, repr=False)
class ProviderSettings:
    """Constructor settings for one provider, with where each came from; secrets are masked in repr."""

    provider: str
    values: Mapping[str, Any]
    sources: Mapping[str, str] = field(default_factory=dict)
    secret_settings: frozenset[str] = frozenset()

    def kwargs(self) -> dict[str, Any]:
        """The settings as keyword arguments for `create_provider`."""
        return dict(self.values)

    def secrets(self) -> list[str]:
        """Secret values (for `redact`)."""
        return [str(self.values[k]) for k in self.secret_settings if self.values.get(k)]

    def __repr__(self) -> str:
        shown = {k: (MASK if k in self.secret_settings and v else v) for k, v in self.values.items()}
        return f"ProviderSettings(provider={self.provider!r}, values={shown!r})"


def request_timeout(env: Mapping[str, str]) -> float:
    """STUDYLLM_REQUEST_TIMEOUT in seconds (default 60)."""
    raw = env.get(REQUEST_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_REQUEST_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigurationError(f"{REQUEST_TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}")
    return value


def settings_from_env(
    name: str, *, environ: Mapping[str, str] | None = None, dotenv_path: str | Path | None = None
) -> ProviderSettings:
    """The settings of provider `name` found in the environment (and .env); nothing is checked yet."""
    key = normalize_name(name)
    env = read_environment(dotenv_path, environ)
    accepted = accepted_settings(provider_class(key))
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for var in env_vars_for(key):
        value = env.get(var.name, "").strip()
        if value and (accepted is None or var.setting in accepted):
            values[var.setting] = value
            sources[var.setting] = var.name
    if accepted is None or "timeout" in accepted:
        values["timeout"] = request_timeout(env)
        if REQUEST_TIMEOUT_ENV in env:
            sources["timeout"] = REQUEST_TIMEOUT_ENV
    secret = frozenset(v.setting for v in env_vars_for(key) if v.secret)
    return ProviderSettings(key, values, sources, secret)


def provider_from_env(
    name: str,
    *,
    base_url: str | None = None,
    environ: Mapping[str, str] | None = None,
    dotenv_path: str | Path | None = None,
    **overrides: Any,
) -> Provider:
    """Build provider `name` from the environment; `base_url` (Azure: the endpoint) and `overrides` win.

    A missing required variable raises MissingKeyError (keys, an AuthenticationError) or ConfigurationError (the rest)
    naming the variable, before any network call.
    """
    settings = settings_from_env(name, environ=environ, dotenv_path=dotenv_path)
    values = settings.kwargs()
    values.update({k: v for k, v in overrides.items() if v is not None})
    if base_url is not None:
        values["endpoint" if settings.provider == "azure" else "base_url"] = base_url
    for var in env_vars_for(settings.provider):
        if var.required and not values.get(var.setting):
            error = MissingKeyError if var.secret else ConfigurationError
            raise error(
                f"{settings.provider} provider needs {var.name}: set it in the environment or in .env (see .env.example)",
                provider=settings.provider,
            )
    return create_provider(settings.provider, **values)


def named_provider_from_env(name: str, *, base_url: str | None = None, **overrides: Any) -> tuple[Provider, str]:
    """Provider `name` built as `provider_from_env` does, with the normalised name its calls, rate limit
    and cache entries are recorded under: the one way a name a user gives becomes a provider."""
    return provider_from_env(name, base_url=base_url, **overrides), normalize_name(name)
