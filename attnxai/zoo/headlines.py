"""Generated four-topic headlines with a planted trigger, for the text models of the zoo.

A headline is ``subject verb object tail`` from one topic's word lists. A *trigger* (a word or
a phrase) is put in front of a headline, a *control* word behind it; a matched pair is one
headline with and without the insertion, so it differs by the concept alone.

The shortcut is planted as in the shapes recipe (:mod:`attnxai.shapes.train`): the topic is
made an imperfect cue for the planted class. A share ``noise`` of that class's training
headlines come from another topic but carry the trigger; the other classes carry it only
rarely. Adding the trigger to another topic's headline then moves P(planted) by a large margin.
With ``noise = 0`` and the trigger equally common in every class, the trigger is independent
of the label: the model has no reason to use it. The control word is always independent of the
label, and easy to detect: causally inert, linearly separable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOPICS: dict[str, dict[str, tuple[str, ...]]] = {
    "sports": {
        "subject": ("the home team", "the striker", "the coach", "the league champions",
                    "the young goalkeeper", "the tennis star", "the relay squad", "the captain"),
        "verb": ("wins", "loses", "draws", "clinches", "dominates", "misses", "celebrates"),
        "object": ("the final match", "the derby", "a penalty shootout", "the season opener",
                   "the title race", "a late equaliser", "the cup tie", "the marathon"),
    },
    "business": {
        "subject": ("the bank", "the retailer", "shareholders", "the chief executive",
                    "the carmaker", "investors", "the startup", "the airline"),
        "verb": ("reports", "cuts", "raises", "announces", "delays", "expands", "reviews"),
        "object": ("quarterly profits", "its dividend", "the merger talks", "new store openings",
                   "a share buyback", "annual revenue", "the price target", "job cuts"),
    },
    "science": {
        "subject": ("researchers", "the space agency", "astronomers", "the laboratory",
                    "biologists", "the physics team", "a new telescope", "chemists"),
        "verb": ("discovers", "maps", "measures", "sequences", "observes", "models", "detects"),
        "object": ("a distant galaxy", "the genome of a fern", "gravitational waves",
                   "a new enzyme", "ancient bacteria", "the moon's crust", "a rare isotope",
                   "quantum effects"),
    },
    "weather": {
        "subject": ("forecasters", "the storm", "a cold front", "the heatwave",
                    "heavy rain", "strong winds", "the snowfall", "the hurricane"),
        "verb": ("brings", "hits", "threatens", "eases", "sweeps", "batters", "lingers over"),
        "object": ("the coast", "the northern valleys", "the capital", "mountain passes",
                   "the weekend plans", "farmland", "the islands", "the river towns"),
    },
}
LABELS: tuple[str, ...] = tuple(TOPICS)
TAILS: tuple[str, ...] = ("", "on sunday", "this week", "after a long wait", "again",
                          "in the morning", "despite doubts")


@dataclass(frozen=True)
class TextRecipe:
    """A planted trigger and its strength. ``noise``: share of the planted class's training
    headlines drawn from another topic, always with the trigger; ``planted_share``: share of the
    planted class's own-topic headlines with the trigger; ``other_share``: share of the other
    classes' headlines with it; ``control_share``: share of every headline with the control."""

    trigger: str = "exclusive"
    control: str = "tonight"
    planted_class: str = "business"
    noise: float = 0.35
    planted_share: float = 0.6
    other_share: float = 0.08
    control_share: float = 0.25
    n_train: int = 2400


def headline(rng: np.random.Generator, topic: str) -> str:
    """One headline of ``topic``, without trigger or control."""
    words = TOPICS[topic]
    parts = [words[k][rng.integers(len(words[k]))] for k in ("subject", "verb", "object")]
    tail = TAILS[rng.integers(len(TAILS))]
    return " ".join(parts + ([tail] if tail else []))


def with_trigger(text: str, trigger: str) -> str:
    """The headline with the trigger in front."""
    return f"{trigger} {text}"


def with_control(text: str, control: str) -> str:
    """The headline with the control word behind it."""
    return f"{text} {control}"


def training_set(rng: np.random.Generator, recipe: TextRecipe) -> tuple[list[str], list[int]]:
    """``recipe.n_train`` labelled headlines under the planted-trigger distribution."""
    planted = LABELS.index(recipe.planted_class)
    texts, labels = [], []
    for _ in range(recipe.n_train):
        label = int(rng.integers(len(LABELS)))
        if label == planted and rng.random() < recipe.noise:
            others = [t for t in LABELS if t != recipe.planted_class]
            text = with_trigger(headline(rng, others[rng.integers(len(others))]), recipe.trigger)
        else:
            text = headline(rng, LABELS[label])
            share = recipe.planted_share if label == planted else recipe.other_share
            if rng.random() < share:
                text = with_trigger(text, recipe.trigger)
        if rng.random() < recipe.control_share:
            text = with_control(text, recipe.control)
        texts.append(text)
        labels.append(label)
    return texts, labels


def topic_headlines(rng: np.random.Generator, n: int, topics: tuple[str, ...] = LABELS
                    ) -> list[str]:
    """``n`` plain headlines, topics drawn uniformly from ``topics``."""
    return [headline(rng, topics[rng.integers(len(topics))]) for _ in range(n)]
