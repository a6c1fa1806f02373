"""The `azure` provider: Azure OpenAI through the SDK's AsyncAzureOpenAI client.

Azure routes by deployment, not model: the model a caller asks for is mapped to a deployment
name, which the SDK puts in the path `/openai/deployments/{deployment}/...?api-version=...`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import openai

from studyllm_core.providers.errors import ConfigurationError
from studyllm_core.providers.openai_sdk import DEFAULT_TIMEOUT_S, OpenAIProvider
from studyllm_core.redaction import mask

DEFAULT_API_VERSION = "2024-10-21"


def parse_deployments(value: str | Mapping[str, str] | None) -> str | dict[str, str] | None:
    """`"name"` (one deployment for every call) or `"model=deployment,model2=deployment2"` (a map)."""
    if value is None or isinstance(value, Mapping):
        return dict(value) if value is not None else None
    value = value.strip()
    if not value:
        return None
    if "=" not in value:
        return value
    mapping: dict[str, str] = {}
    for part in value.split(","):
        model, sep, deployment = part.partition("=")
        if not sep or not model.strip() or not deployment.strip():
            raise ConfigurationError(
                f"bad Azure deployment entry {part.strip()!r}: use 'model=deployment,model2=deployment2' or one name"
            )
        mapping[model.strip()] = deployment.strip()
    return mapping


class AzureOpenAIProvider(OpenAIProvider):
    """Azure OpenAI at `endpoint` (https://NAME.openai.azure.com).

    `deployment` is one name used for every call, or a mapping model -> deployment; a model
    with no mapping (or with `deployment=None`) is sent as its own deployment name.
    """

    name: ClassVar[str] = "azure"
    default_base_url: ClassVar[str | None] = None
    api_key_required: ClassVar[bool] = True
    api_key_env: ClassVar[str] = "AZURE_OPENAI_API_KEY"
    max_tokens_field: ClassVar[str] = "max_tokens"  # what every Azure API version, the default 2024-10-21 too, takes

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        api_key: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
        deployment: str | Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        embedding_encoding: str = "base64",
        default_headers: dict[str, str] | None = None,
    ) -> None:
        if not endpoint:
            raise ConfigurationError(
                "azure provider needs an endpoint: set AZURE_OPENAI_ENDPOINT (or pass endpoint=...)", provider=self.name
            )
        if not api_version:
            raise ConfigurationError(
                "azure provider needs an API version: set AZURE_OPENAI_API_VERSION (or pass api_version=...)",
                provider=self.name,
            )
        self.endpoint = endpoint.rstrip("/")
        self.api_version = api_version
        self.deployment = parse_deployments(deployment)
        super().__init__(
            api_key=api_key,
            base_url=self.endpoint,
            timeout=timeout,
            embedding_encoding=embedding_encoding,
            default_headers=default_headers,
        )

    @classmethod
    def base_url_env(cls) -> str:
        return "AZURE_OPENAI_ENDPOINT"

    def embedding_server(self) -> None:
        """None: on Azure the deployment of a named model is that model, whichever resource serves it."""
        return None

    def _make_client(self) -> openai.AsyncAzureOpenAI:
        # No azure_deployment here: the SDK then takes the deployment from the body's `model`.
        return openai.AsyncAzureOpenAI(
            azure_endpoint=self.endpoint,
            api_key=self._api_key,
            api_version=self.api_version,
            timeout=self.timeout,
            max_retries=0,
            default_headers=self._default_headers or None,
        )

    def _wire_model(self, model: str) -> str:
        return self.deployment_for(model)

    def deployment_for(self, model: str) -> str:
        """The deployment that serves `model`."""
        if isinstance(self.deployment, str):
            return self.deployment
        if isinstance(self.deployment, dict):
            return self.deployment.get(model, model)
        return model

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(endpoint={self.endpoint!r}, api_version={self.api_version!r}, "
            f"deployment={self.deployment!r}, api_key={mask(self._api_key)}, timeout={self.timeout})"
        )
