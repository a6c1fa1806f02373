"""Services built from a provider's name: the one way the CLI, the pipeline and notebooks turn the name
a user gives into a provider and the name its calls are recorded under."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from studyllm_core.providers.registry import CHAT_PROVIDERS, EMBEDDING_PROVIDERS
from studyllm_core.providers.settings import named_provider_from_env

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["CHAT_PROVIDERS", "EMBEDDING_PROVIDERS", "BuiltByName"]  # the names a front layer may list


class BuiltByName:
    """Mixin of a service constructed as `cls(engine, provider, *, provider_name, model, **options)`."""

    @classmethod
    def from_name(
        cls,
        provider: str,
        *,
        model: str,
        engine: Engine | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        api_key: str | None = None,
        **options: Any,
    ) -> Self:
        """The service of provider `provider` built by name from the environment (plus these overrides).

        The provider's settings are checked first (a missing key stops here, before any server starts),
        then `engine` is the database (default: `open_database()`); `options` go to the constructor.
        """
        from studyllm_core.db.engine import open_database  # here: the CLI's parser lists the names without SQLAlchemy

        built, name = named_provider_from_env(provider, base_url=base_url, timeout=timeout, api_key=api_key)
        return cls(engine if engine is not None else open_database(), built, provider_name=name, model=model, **options)
