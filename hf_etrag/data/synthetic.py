"""A synthetic knowledge base for the demo: made-up people, one fact per passage, questions answerable
from exactly one passage.

Questions paraphrase the passage's relation ("Where is the hometown of X?" for "X was born in Y") and
every passage also names a second person, so a frozen retriever that matches names finds many near
misses; a retriever trained through the generator learns which passage actually answers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from datasets import Dataset

__all__ = ["SyntheticKnowledgeBase", "make_synthetic_knowledge_base"]

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "gr", "kr", "tr", "sl", "st"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou"]
_CODAS = ["", "n", "r", "l", "s", "k", "m", "x"]

# relation -> (passage template, question templates, value pool)
_RELATIONS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "birthplace": (
        "{subject}, a friend of {other}, was born in the town of {value}.",
        ("Where is the hometown of {subject}?", "In which town did {subject} come into the world?"),
        ("harlow", "penmoor", "castleby", "dunmere", "ashford", "kelby", "northam", "rivenby", "olden", "westby",
         "tarnhill", "brookmere"),
    ),
    "occupation": (
        "{subject}, who once met {other}, works as a {value}.",
        ("What does {subject} do for a living?", "What is the profession of {subject}?"),
        ("baker", "pilot", "farmer", "painter", "doctor", "sailor", "teacher", "miner", "tailor", "judge",
         "chemist", "gardener"),
    ),
    "pet": (
        "{subject} and {other} are neighbours; {subject} keeps a {value} at home.",
        ("Which animal lives with {subject}?", "What kind of creature does {subject} look after?"),
        ("cat", "parrot", "goat", "rabbit", "tortoise", "hamster", "ferret", "pony", "lizard", "goose",
         "hedgehog", "donkey"),
    ),
    "colour": (
        "The colour that {subject} loves most is {value}, unlike {other}.",
        ("Which shade does {subject} prefer?", "What hue is the favourite of {subject}?"),
        ("red", "blue", "green", "yellow", "purple", "orange", "silver", "black", "white", "brown", "pink",
         "golden"),
    ),
}


@dataclass
class SyntheticKnowledgeBase:
    corpus: Dataset  # id, text
    train: Dataset  # id, question, answers, gold_passage_id
    test: Dataset


def _name(rng: random.Random) -> str:
    def word(syllables: int) -> str:
        return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables))

    return f"{word(2).capitalize()} {word(2).capitalize()}"


def make_synthetic_knowledge_base(
    n_people: int = 100, test_fraction: float = 0.2, seed: int = 0
) -> SyntheticKnowledgeBase:
    """Generate `n_people * 4` passages (one fact each) and one question per passage, split at random."""
    if n_people < 2:
        raise ValueError(f"`n_people` must be at least 2 (each passage names a second person); got {n_people}.")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"`test_fraction` must be in (0, 1); got {test_fraction}.")
    rng = random.Random(seed)
    names: list[str] = []
    while len(names) < n_people:
        name = _name(rng)
        if name not in names:
            names.append(name)
    passages, questions = [], []
    for person, subject in enumerate(names):
        for relation, (template, question_templates, values) in _RELATIONS.items():
            other = names[(person + rng.randrange(1, n_people)) % n_people]
            value = rng.choice(values)
            passage_id = f"p{len(passages)}"
            passages.append(
                {"id": passage_id, "text": template.format(subject=subject, other=other, value=value)}
            )
            questions.append(
                {
                    "id": f"q{len(questions)}",
                    "question": rng.choice(question_templates).format(subject=subject),
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
