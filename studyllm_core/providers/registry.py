"""Find provider classes by name: the built-ins, plus third-party ones from entry points.

A package adds a provider without editing studyllm by declaring, in its pyproject.toml,

    [project.entry-points."studyllm.providers"]
    my-provider = "my_package.module:MyProvider"   # a studyllm Provider subclass

Built-ins are imported only when asked for, so naming `extractive` never imports torch.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from studyllm_core.providers.base import Provider
from studyllm_core.providers.errors import ConfigurationError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "studyllm.providers"

BUILTIN_PROVIDERS: dict[str, str] = {
    "openai": "studyllm_core.providers.openai_sdk:OpenAIProvider",
    "openai-compatible": "studyllm_core.providers.openai_http:OpenAICompatibleProvider",
    "azure": "studyllm_core.providers.azure:AzureOpenAIProvider",
    "hyperbolic": "studyllm_core.providers.hyperbolic:HyperbolicProvider",
    "local": "studyllm_core.providers.local:LocalEmbeddingProvider",
    "extractive": "studyllm_core.providers.extractive:ExtractiveSummarizer",
}

# Registered at run time with `register_provider` (tests, notebooks); these win over entry points.
_runtime: dict[str, type[Provider]] = {}


def normalize_name(name: str) -> str:
    """Provider names are case-insensitive and `_` equals `-` (`OPENAI_COMPATIBLE` is `openai-compatible`)."""
    return name.strip().lower().replace("_", "-")


def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        key = normalize_name(ep.name)
        if key in BUILTIN_PROVIDERS:
            log.warning("entry point %r (%s) ignored: %r is a built-in provider", ep.name, ep.value, key)
            continue
        found.setdefault(key, ep)
    return found


def available_providers() -> list[str]:
    """Every provider name `create_provider` accepts, sorted."""
    return sorted({*BUILTIN_PROVIDERS, *_runtime, *_entry_points()})


def register_provider(name: str, cls: type[Provider]) -> None:
    """Make `cls` available under `name` in this process (packages should use the entry point instead)."""
    _check_class(cls, name)
    key = normalize_name(name)
    if key in BUILTIN_PROVIDERS:
        raise ConfigurationError(f"{key!r} is a built-in provider; register yours under another name")
    _runtime[key] = cls


def unregister_provider(name: str) -> None:
    """Undo `register_provider` (no error if it was not registered)."""
    _runtime.pop(normalize_name(name), None)


def _check_class(obj: Any, where: str) -> type[Provider]:
    if not (inspect.isclass(obj) and issubclass(obj, Provider)):
        raise ConfigurationError(f"provider {where!r} is {obj!r}, not a studyllm Provider subclass")
    return obj


def provider_class(name: str) -> type[Provider]:
    """The Provider subclass registered under `name`, or ConfigurationError listing the known names."""
    key = normalize_name(name)
    if key in BUILTIN_PROVIDERS:
        module, _, attr = BUILTIN_PROVIDERS[key].partition(":")
        return _check_class(getattr(importlib.import_module(module), attr), key)
    if key in _runtime:
        return _runtime[key]
    ep = _entry_points().get(key)
    if ep is None:
        raise ConfigurationError(
            f"unknown provider {name!r}: use one of {', '.join(available_providers())} "
            f"(or install a package that adds it under the {ENTRY_POINT_GROUP!r} entry point)"
        )
    try:
        obj = ep.load()
    except Exception as exc:  # noqa: BLE001 - any import failure of a plugin is a configuration problem
        raise ConfigurationError(
            f"provider {key!r} could not be loaded from entry point {ep.value!r}: {type(exc).__name__}: {exc}"
        ) from None
    return _check_class(obj, f"{key} ({ep.value})")


def accepted_settings(cls: type[Provider]) -> set[str] | None:
    """The keyword settings `cls(...)` takes, or None if it takes any (**kwargs)."""
    params = inspect.signature(cls.__init__).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.name != "self" and p.kind is not inspect.Parameter.VAR_POSITIONAL}


def create_provider(name: str, **settings: Any) -> Provider:
    """Build the provider registered under `name` from keyword settings (api_key, base_url, timeout, ...)."""
    cls = provider_class(name)
    accepted = accepted_settings(cls)
    if accepted is not None:
        unknown = sorted(set(settings) - accepted)
        if unknown:
            raise ConfigurationError(
                f"provider {normalize_name(name)!r} does not take setting(s) {', '.join(unknown)}: "
                f"it takes {', '.join(sorted(accepted)) or 'none'}"
            )
    return cls(**settings)
