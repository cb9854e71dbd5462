"""The shipped price list (``config/prices.yaml``): what a deployment costs, and how much context its
model takes, when the config does not say.

The list is in USD per 1,000,000 tokens, as providers publish prices; the rest of ModelRouter works
in USD per 1,000 (``router.v1.Price``). The conversion is decimal, so a listed ``0.15`` becomes the
double whose shortest text is ``0.00015`` (what ``common.pricing`` reads back), never
``0.00015000000000000001``.
"""

from __future__ import annotations

import functools
from datetime import date
from decimal import Decimal
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_PRICE_LIST_PATH = Path(__file__).resolve().parents[2] / "config" / "prices.yaml"
ANY_MODEL = "*"
_THOUSAND = Decimal(1000)


class PriceListError(Exception):
    pass


class ListedModel(BaseModel):
    """One model's list prices (USD per 1M tokens) and context window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)  # None: cached tokens are billed as input
    output: float = Field(default=0.0, ge=0)
    context_window: int | None = Field(default=None, gt=0)

    @property
    def prompt_per_1k(self) -> float:
        return per_1k(self.input)

    @property
    def completion_per_1k(self) -> float:
        return per_1k(self.output)

    @property
    def cached_prompt_per_1k(self) -> float | None:
        return None if self.cached_input is None else per_1k(self.cached_input)


class PriceList(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    as_of: date
    providers: dict[str, dict[str, ListedModel]]

    def find(self, provider: str, model: str) -> ListedModel | None:
        """The listing of ``provider``'s ``model`` (the upstream's own name), exactly; else the
        provider's ``"*"`` entry; else None (an unknown price)."""
        models = self.providers.get(provider)
        if models is None:
            return None
        return models.get(model) or models.get(ANY_MODEL)


def per_1k(usd_per_million: float) -> float:
    return float(Decimal(repr(usd_per_million)) / _THOUSAND)


@functools.cache
def load_price_list(path: Path = DEFAULT_PRICE_LIST_PATH) -> PriceList:
    """The list at ``path`` (the shipped one by default), read once per process."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PriceListError(f"{path}: cannot read the price list: {exc}") from None
    try:
        return PriceList.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PriceListError(f"{path}: {where}: {first['msg']}") from None


def context_window(provider: str, model: str, price_list: PriceList | None = None) -> int | None:
    """Tokens (prompt + output) ``provider``'s ``model`` accepts, from the list; None when not listed."""
    listed = (price_list or load_price_list()).find(provider, model)
    return listed.context_window if listed is not None else None
