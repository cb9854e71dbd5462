"""Auto routing at the gateway: which model a request names, and for ``auto`` the prompt's class.

A body whose ``model`` is ``auto`` is classified (``gateway.prompt_class``) and routed as ``auto``
with ``RouteRequest.prompt_class``; the router maps the class to candidate models. A chat or
completions body without ``model`` takes the default model (``DEFAULT_MODEL``, else the config's
``default_model``), classified too when that default is ``auto``; without a default it is the 400
it always was. Any other request pays one attribute read and one string comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from common.config import ModelRouterConfig
from common.errors import InvalidRequestError
from common.settings import GatewaySettings
from gateway.prompt_class import PromptClassifier, classifier_named
from gateway.prompt_class.heuristic import HeuristicClassifier

AUTO_MODEL: Final = "auto"


@dataclass(frozen=True, slots=True)
class AutoRouting:
    default_model: str = ""  # "" : a body must name its model
    classifier: PromptClassifier = field(default_factory=HeuristicClassifier)

    @classmethod
    def configured(cls, settings: GatewaySettings, config: ModelRouterConfig) -> AutoRouting:
        """The environment's ``DEFAULT_MODEL`` wins over the config file's ``default_model``."""
        default = settings.default_model or config.default_model
        return cls(default_model=default, classifier=classifier_named(settings.prompt_classifier))

    def model_of(self, parsed: Any) -> str:
        """The model a parsed body asks for: its own, else the default (a body without one is
        parsed with ``model`` empty: an explicit empty string is refused by the schema)."""
        model: str = parsed.model
        if model:
            return model
        if not self.default_model:
            raise InvalidRequestError("Missing required parameter: 'model'.", param="model")
        return self.default_model

    def prompt_class_of(self, parsed: Any, model: str) -> str:
        """The class the router needs for ``auto``; "" for a named model (nothing is read)."""
        return self.classifier.classify(parsed) if model == AUTO_MODEL else ""
