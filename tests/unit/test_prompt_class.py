"""Auto routing's prompt classifier: its accuracy on the labelled sets, what text it reads from each
kind of parsed body, and that its cost stays bounded (the 50 µs budget is measured by
``python -m bench.classifier``; here only a gross regression is caught, the suite's machine being shared)."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from gateway.anthropic.schemas import parse_request
from gateway.prompt_class import CLASSES, CLASSIFIERS, PromptClassifier, classifier_named
from gateway.prompt_class.heuristic import HeuristicClassifier, classify_text
from gateway.schemas import ChatCompletionRequest, CompletionRequest

DATA = Path(__file__).resolve().parents[1] / "data"
# The set the heuristic was tuned on, and one written after the tuning: its accuracy is the honest one.
TUNED_FLOOR = 0.97  # 223/224 today; losing more than five prompts is a regression
HOLDOUT_FLOOR = 0.90  # 57/60 today; the aim, on prompts the rules were not fitted to
CLASS_RECALL_FLOOR = 0.85  # no class may be sacrificed to the others


def _rows(name: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines()]


def _chat(prompt: str, **extra: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "auto", "messages": [{"role": "user", "content": prompt}], **extra}
    )


def _accuracy(name: str) -> tuple[float, dict[str, float]]:
    classifier = HeuristicClassifier()
    rows = _rows(name)
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    misses = []
    for row in rows:
        got = classifier.classify(_chat(row["prompt"]))
        total[row["class"]] += 1
        if got == row["class"]:
            right[row["class"]] += 1
        else:
            misses.append(f"  {row['class']} -> {got}: {row['prompt'][:70]!r}")
    accuracy = sum(right.values()) / len(rows)
    recall = {c: right[c] / total[c] for c in total}
    print(f"\n{name}: accuracy {accuracy:.1%} ({sum(right.values())}/{len(rows)}), recall {recall}")
    print("\n".join(misses))
    return accuracy, recall


def test_the_labelled_sets_are_large_varied_and_use_only_known_classes() -> None:
    tuned, holdout = _rows("prompt_classes.jsonl"), _rows("prompt_classes_holdout.jsonl")
    assert len(tuned) >= 200
    for rows in (tuned, holdout):
        assert {row["class"] for row in rows} == set(CLASSES)
        assert min(Counter(row["class"] for row in rows).values()) >= len(rows) // 5
    prompts = [row["prompt"] for row in tuned + holdout]
    assert len(set(prompts)) == len(prompts)


def test_accuracy_on_the_set_it_was_tuned_on() -> None:
    accuracy, recall = _accuracy("prompt_classes.jsonl")
    assert accuracy >= TUNED_FLOOR
    assert min(recall.values()) >= CLASS_RECALL_FLOOR


def test_accuracy_on_the_held_out_set() -> None:
    accuracy, recall = _accuracy("prompt_classes_holdout.jsonl")
    assert accuracy >= HOLDOUT_FLOOR
    assert min(recall.values()) >= CLASS_RECALL_FLOOR


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        # seed 004's own examples
        ("Write a Python function to sort a list", "code"),
        ("Analyze the time complexity of merge sort", "complex"),
        ("What is 2+2?", "simple"),
        ("Tell me about climate change", "general"),
        ("What is the capital of France?", "simple"),
        ("Count from 1 to 10", "simple"),
        ("Write a Python function to calculate fibonacci numbers", "code"),
        # each signal alone
        ("```\nx = 1\n```", "code"),
        ("what does `ls -la` print", "code"),
        ("ValueError: invalid literal for int() with base 10", "code"),
        ("Show that the function f(x) = x^2 is convex.", "complex"),  # maths, not code
        ("Plan the move to Postgres: walk me through the phases and their risks.", "complex"),
        ("Please: 1) list the causes, 2) rank them, 3) say what to do first.", "complex"),
        ("word " * 200, "complex"),  # long, with no ask for writing
        ("Rewrite this so it sounds friendlier: " + "we regret to inform you. " * 40, "general"),
        ("The meeting notes. " * 40 + "Can you suggest a title for them?", "general"),  # the ask closes it
        ("The meeting notes. " * 40 + "Analyze why the project slipped.", "complex"),
        ("The city's new bike-share program turns one.", "simple"),  # "program": not software
        ("Write a haiku about rain.", "general"),
        ("", "simple"),  # nothing to go on: the cheapest class
    ],
)
def test_signals(prompt: str, expected: str) -> None:
    assert classify_text(prompt) == expected


def test_a_chat_is_classified_by_its_last_user_turn_not_the_system_prompt_or_history() -> None:
    body = ChatCompletionRequest.model_validate(
        {
            "model": "auto",
            "messages": [
                {"role": "system", "content": "You are a senior Python engineer. Always answer with code."},
                {"role": "user", "content": "```python\nprint(1)\n```"},
                {"role": "assistant", "content": "It prints 1."},
                {"role": "user", "content": "Thanks, that helped."},
            ],
        }
    )
    assert HeuristicClassifier().classify(body) == "simple"


def test_content_parts_text_is_read_and_images_ignored() -> None:
    body = _chat(
        [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "text", "text": "Prove that this triangle's angles sum to 180 degrees."},
        ]
    )
    assert HeuristicClassifier().classify(body) == "complex"


def test_completions_prompts() -> None:
    classifier = HeuristicClassifier()
    assert (
        classifier.classify(CompletionRequest.model_validate({"model": "auto", "prompt": "def add(a, b):"})) == "code"
    )
    batch = CompletionRequest.model_validate({"model": "auto", "prompt": ["Who wrote Hamlet?", "x"]})
    assert classifier.classify(batch) == "simple"
    tokens = CompletionRequest.model_validate({"model": "auto", "prompt": [1, 2, 3]})
    assert classifier.classify(tokens) in CLASSES  # token ids: no text to read, still a class


def test_anthropic_messages_bodies() -> None:
    body = parse_request(
        json.dumps(
            {
                "model": "auto",
                "max_tokens": 100,
                "system": "Be brief.",
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "Implement quicksort in Rust."}]},
                ],
            }
        ).encode()
    )
    assert HeuristicClassifier().classify(body) == "code"
    shorthand = parse_request(
        json.dumps({"model": "auto", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi!"}]}).encode()
    )
    assert HeuristicClassifier().classify(shorthand) == "simple"


def test_the_registry_builds_the_named_classifier_and_refuses_unknown_names() -> None:
    classifier: PromptClassifier = classifier_named("heuristic")
    assert isinstance(classifier, HeuristicClassifier) and classifier.name == "heuristic"
    assert set(CLASSIFIERS) >= {"heuristic"}
    with pytest.raises(ValueError, match="unknown prompt classifier 'embedding'"):
        classifier_named("embedding")


def test_the_cost_does_not_grow_with_the_prompt() -> None:
    classifier = HeuristicClassifier()
    short = _chat("What is the capital of France?")
    huge = _chat("Summarise this report. " + "lorem ipsum " * 90_000)  # ~1 MB

    def best_of(body: ChatCompletionRequest) -> float:
        times = []
        for _ in range(50):
            start = time.perf_counter()
            classifier.classify(body)
            times.append(time.perf_counter() - start)
        return min(times)

    # Reading the whole megabyte would take a millisecond or more; a bounded scan takes tens of µs.
    assert best_of(huge) < 0.0005
    assert best_of(huge) < 50 * best_of(short) + 0.0001
