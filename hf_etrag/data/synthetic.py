"""A synthetic knowledge base for the demo: made-up people, one fact per passage, questions answerable
from exactly one passage.

Questions name the relation with a made-up word ("What is the vorbin of X?" asks where X was born), and
every person has six facts plus mentions in other people's passages: a frozen retriever finds the
person but not the fact, while a retriever trained through the generator learns what the words mean.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from datasets import Dataset

__all__ = ["SyntheticKnowledgeBase", "make_synthetic_knowledge_base"]

_ONSETS = [
    "b",
    "d",
    "f",
    "g",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "z",
    "br",
    "gr",
    "kr",
    "tr",
    "sl",
    "st",
]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou"]
_CODAS = ["", "n", "r", "l", "s", "k", "m", "x"]

# relation -> (passage template, value pool)
_RELATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "birthplace": (
        "{subject}, a friend of {other}, was born in the town of {value}.",
        (
            "harlow",
            "penmoor",
            "castleby",
            "dunmere",
            "ashford",
            "kelby",
            "northam",
            "rivenby",
            "olden",
            "westby",
            "tarnhill",
            "brookmere",
        ),
    ),
    "occupation": (
        "{subject}, who once met {other}, works as a {value}.",
        (
            "baker",
            "pilot",
            "farmer",
            "painter",
            "doctor",
            "sailor",
            "teacher",
            "miner",
            "tailor",
            "judge",
            "chemist",
            "gardener",
        ),
    ),
    "pet": (
        "{subject} and {other} are neighbours; {subject} keeps a {value} at home.",
        (
            "cat",
            "parrot",
            "goat",
            "rabbit",
            "tortoise",
            "hamster",
            "ferret",
            "pony",
            "lizard",
            "goose",
            "hedgehog",
            "donkey",
        ),
    ),
    "instrument": (
        "{subject} plays the {value} in a band with {other}.",
        (
            "violin",
            "drums",
            "flute",
            "harp",
            "trumpet",
            "cello",
            "banjo",
            "piano",
            "oboe",
            "tuba",
            "lute",
            "clarinet",
        ),
    ),
    "food": (
        "At dinner with {other}, {subject} always orders {value}.",
        (
            "soup",
            "pasta",
            "curry",
            "salad",
            "pizza",
            "noodles",
            "stew",
            "omelette",
            "risotto",
            "tacos",
            "dumplings",
            "pancakes",
        ),
    ),
    "colour": (
        "The colour that {subject} loves most is {value}, unlike {other}.",
        (
            "red",
            "blue",
            "green",
            "yellow",
            "purple",
            "orange",
            "silver",
            "black",
            "white",
            "brown",
            "pink",
            "golden",
        ),
    ),
}


@dataclass
class SyntheticKnowledgeBase:
    corpus: Dataset  # id, text
    train: Dataset  # id, question, answers, gold_passage_id
    test: Dataset


def _word(rng: random.Random, syllables: int = 2) -> str:
    return "".join(
        rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables)
    ).capitalize()


def _names(rng: random.Random, n_people: int) -> list[str]:
    # First and family names come from small pools, so every name shares a part with many others: a
    # retriever has to match both parts, not just one familiar-looking token.
    pool_size = max(2, int(n_people**0.5) + 1)
    firsts, lasts = set(), set()
    while len(firsts) < pool_size:
        firsts.add(_word(rng))
    while len(lasts) < pool_size:
        lasts.add(_word(rng))
    combos = [f"{f} {last}" for f in sorted(firsts) for last in sorted(lasts)]
    rng.shuffle(combos)
    return combos[:n_people]


def make_synthetic_knowledge_base(
    n_people: int = 100, test_fraction: float = 0.2, seed: int = 0
) -> SyntheticKnowledgeBase:
    """Generate `n_people * 6` passages (one fact each) and one question per passage, split at random."""
    if n_people < 2:
        raise ValueError(
            f"`n_people` must be at least 2 (each passage names a second person); got {n_people}."
        )
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"`test_fraction` must be in (0, 1); got {test_fraction}.")
    rng = random.Random(seed)
    names = _names(rng, n_people)
    passages, questions = [], []
    keywords = {relation: _word(rng).lower() for relation in _RELATIONS}
    question_templates = ("What is the {keyword} of {subject}?", "Tell me the {keyword} of {subject}.")
    for person, subject in enumerate(names):
        for relation, (template, values) in _RELATIONS.items():
            other = names[(person + rng.randrange(1, n_people)) % n_people]
            value = rng.choice(values)
            passage_id = f"p{len(passages)}"
            passages.append(
                {"id": passage_id, "text": template.format(subject=subject, other=other, value=value)}
            )
            questions.append(
                {
                    "id": f"q{len(questions)}",
                    "question": rng.choice(question_templates).format(
                        keyword=keywords[relation], subject=subject
                    ),
                    "answers": [value],
                    "gold_passage_id": passage_id,
                    "relation": relation,
                }
            )
    rng.shuffle(questions)
    n_test = max(1, int(len(questions) * test_fraction))
    return SyntheticKnowledgeBase(
        corpus=Dataset.from_list(passages),
        train=Dataset.from_list(questions[n_test:]),
        test=Dataset.from_list(questions[:n_test]),
    )
