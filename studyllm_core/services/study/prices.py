"""Token prices per provider and model, for cost estimates in study analytics.

Defaults ship in `studyllm_core/data/prices.json` (US dollars per million tokens); a JSON or TOML
file named by `STUDYLLM_PRICES`, of the same shape, is merged over them model by model:

    {"prices": {"openai": {"gpt-4o": {"input": 2.5, "output": 10.0}}, "local": {"*": {"input": 0}}}}

A model of `"*"` prices every model of its provider that has no entry of its own. A model with no
price has an unknown cost (None/NULL), never 0. Calls whose tokens are recorded only as a total
(legacy imports) are priced at the input rate.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from studyllm_core.errors import ConfigError

ENV_PRICES = "STUDYLLM_PRICES"
WILDCARD = "*"

# SQL pieces shared by every priced query: a `_prices` relation built from four array parameters,
# and the per-row token split (prompt tokens, else the total minus completion tokens).
PRICES_CTE = (
    "_prices(provider, model, input_per_m, output_per_m) AS (SELECT * FROM unnest("
    "CAST(:price_provider AS text[]), CAST(:price_model AS text[]), "
    "CAST(:price_input AS float8[]), CAST(:price_output AS float8[])))"
)
INPUT_TOKENS_SQL = "coalesce(prompt_tokens, greatest(total_tokens - coalesce(completion_tokens, 0), 0), 0)"
OUTPUT_TOKENS_SQL = "coalesce(completion_tokens, 0)"
TOTAL_TOKENS_SQL = "coalesce(total_tokens, coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0))"


def price_join(alias: str) -> str:
    """LEFT JOINs that find the rate of `alias`'s provider/model: its own entry, else the provider's `*`."""
    return (
        f" LEFT JOIN _prices px ON px.provider = {alias}.provider AND px.model = {alias}.model"
        f" LEFT JOIN _prices pw ON pw.provider = {alias}.provider AND pw.model = '{WILDCARD}'"
    )


PRICED_SQL = "coalesce(px.input_per_m, pw.input_per_m) IS NOT NULL"


def cost_sql(input_tokens: str, output_tokens: str) -> str:
    """Dollar cost of token counts under the joined rates (NULL when the model has no price)."""
    return (
        f"(({input_tokens}) * coalesce(px.input_per_m, pw.input_per_m) "
        f"+ ({output_tokens}) * coalesce(px.output_per_m, pw.output_per_m)) / 1e6"
    )


@dataclass(frozen=True)
class Price:
    """US dollars per million input (prompt) and output (completion) tokens."""

    input_per_m: float
    output_per_m: float

    def cost(self, input_tokens: float, output_tokens: float) -> float:
        return (input_tokens * self.input_per_m + output_tokens * self.output_per_m) / 1e6


class PriceTable:
    """Prices by (provider, model), with per-provider wildcards."""

    def __init__(self, entries: dict[tuple[str, str], Price], sources: list[str] | None = None) -> None:
        self.entries = dict(entries)
        self.sources = sources or []

    def price(self, provider: str, model: str) -> Price | None:
        """The price of this model, its provider's wildcard price, or None when unknown."""
        return self.entries.get((provider, model)) or self.entries.get((provider, WILDCARD))

    def cost(self, provider: str, model: str, input_tokens: float, output_tokens: float) -> float | None:
        """Dollar cost, or None when the model has no price."""
        price = self.price(provider, model)
        return None if price is None else price.cost(input_tokens, output_tokens)

    def sql_params(self) -> dict[str, list[Any]]:
        """The array parameters that `PRICES_CTE` reads."""
        keys = sorted(self.entries)
        return {
            "price_provider": [p for p, _ in keys],
            "price_model": [m for _, m in keys],
            "price_input": [self.entries[k].input_per_m for k in keys],
            "price_output": [self.entries[k].output_per_m for k in keys],
        }


def load_prices(path: str | Path | None = None) -> PriceTable:
    """The packaged defaults, with the file at `path` (default: `$STUDYLLM_PRICES`, if set) merged over them."""
    defaults = files("studyllm_core").joinpath("data", "prices.json")
    entries = _parse(json.loads(defaults.read_text(encoding="utf-8")), "the packaged prices.json")
    sources = ["packaged"]
    override = path if path is not None else os.environ.get(ENV_PRICES) or None
    if override is not None:
        override = Path(override).expanduser()
        entries.update(_parse(_read_file(override), str(override)))
        sources.append(str(override))
    return PriceTable(entries, sources)


def _read_file(path: Path) -> Any:
    fix = f"fix it or unset {ENV_PRICES}"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the price file {path} ({exc.strerror}); {fix}") from None
    try:
        if path.suffix.lower() == ".toml":
            return tomllib.loads(raw.decode("utf-8"))
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise ConfigError(f"price file {path} is not valid {kind} ({exc}); {fix}") from None


def _parse(document: Any, source: str) -> dict[tuple[str, str], Price]:
    shape = 'expected {"prices": {"PROVIDER": {"MODEL": {"input": N, "output": N}}}}'
    prices = document.get("prices") if isinstance(document, dict) else None
    if not isinstance(prices, dict):
        raise ConfigError(f"price file {source} has no \"prices\" table; {shape}")
    entries: dict[tuple[str, str], Price] = {}
    for provider, models in prices.items():
        if not isinstance(models, dict):
            raise ConfigError(f"price file {source}: prices.{provider} must be a table of models; {shape}")
        for model, rates in models.items():
            where = f"prices.{provider}.{model}"
            if not isinstance(rates, dict) or "input" not in rates:
                raise ConfigError(f"price file {source}: {where} needs an \"input\" price; {shape}")
            values = [rates.get("input"), rates.get("output", 0.0)]
            if not all(_is_price(v) for v in values):
                raise ConfigError(
                    f"price file {source}: {where} prices must be non-negative numbers (dollars per million tokens)"
                )
            entries[(str(provider), str(model))] = Price(float(values[0]), float(values[1]))
    return entries


def _is_price(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
