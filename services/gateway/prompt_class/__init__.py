"""Auto routing's prompt classes: what a prompt needs, decided at the gateway from the parsed body.

``PromptClassifier`` is the interface (a learned or embedding classifier can replace the heuristic
one); ``classifier_named`` builds the one a setting names.
"""

from gateway.prompt_class.base import CLASSES, PromptClassifier
from gateway.prompt_class.registry import CLASSIFIERS, UnknownClassifierError, classifier_named

__all__ = ["CLASSES", "CLASSIFIERS", "PromptClassifier", "UnknownClassifierError", "classifier_named"]
