"""Relation extraction as generation: TACRED-format records into questions whose answer is the relation
label in words.

A record (TACRED, and `semeval2010_task8` converted to its layout) has `token` (the words), inclusive word
spans `subj_start`/`subj_end` and `obj_start`/`obj_end`, and `relation`. It becomes

- `question`: the template filled with the sentence (words joined by single spaces; with
  `entity_markers=True` the subject is wrapped as `@ ... @` and the object as `# ... #`, the untyped
  punctuation markers of Zhou & Chen 2022, which any tokenizer reads without new tokens) and the two
  entities' words;
- `answers`: `[verbalize_relation(relation)]` (or the caller's `label_words`); `label`: the raw relation.

TACRED's Penn-Treebank bracket tokens (`-LRB-`, ...) are written as the brackets themselves.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Iterable, Mapping
from typing import Any

from datasets import Dataset, Features, List, Value

from .sources import RecordContext, map_records, read_source

__all__ = [
    "DEFAULT_RELATION_TEMPLATE",
    "SEMEVAL_NEGATIVE_LABEL",
    "TACRED_NEGATIVE_LABEL",
    "load_relation_extraction",
    "relation_labels",
    "verbalize_labels",
    "verbalize_relation",
]

TACRED_NEGATIVE_LABEL = "no_relation"
SEMEVAL_NEGATIVE_LABEL = "Other"
DEFAULT_RELATION_TEMPLATE = "{sentence} The relation between {subj} and {obj} is"

_TEMPLATE_FIELDS = ("sentence", "subj", "obj", "subj_type", "obj_type")
_REQUIRED = ("token", "subj_start", "subj_end", "obj_start", "obj_end", "relation")
_PTB_BRACKETS = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}"}
_SEMEVAL = re.compile(r"^([A-Za-z]+)-([A-Za-z]+)\((e[12]),(e[12])\)$")
_TYPED = re.compile(r"^([A-Za-z]+):(.+)$")
_TYPE_WORDS = {"per": "person", "org": "organization"}
# Relation names that TACRED uses under both `per:` and `org:`: they keep the type word so that
# dropping the prefix stays injective (the rule is per label, so every split verbalises alike).
_SHARED_TACRED_NAMES = {"alternate_names", "parents"}


def verbalize_relation(label: str) -> str:
    """A relation label in plain lower-case words, for the generator to produce.

    - SemEval `Role1-Role2(e1,e2)`: the subject's role then the object's, so the direction stays:
      `"Cause-Effect(e1,e2)"` -> `"cause effect"`, `"Cause-Effect(e2,e1)"` -> `"effect cause"`;
    - TACRED `type:name`: the name, `"per:city_of_birth"` -> `"city of birth"` (`/` reads "or",
      `stateorprovince` "state or province"); the two names TACRED uses for both persons and
      organisations keep the type: `"org:parents"` -> `"organization parents"`;
    - anything else: lower-cased with `_`, `-` and `:` as spaces (`"Other"` -> `"other"`,
      `"no_relation"` -> `"no relation"`).

    Use [`verbalize_labels`] on a whole label set: it checks that no two labels share words.
    """
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"A relation label must be a non-empty string; got {label!r}.")
    label = label.strip()
    semeval = _SEMEVAL.match(label)
    if semeval:
        first, second, subject_slot, object_slot = semeval.groups()
        if subject_slot == object_slot:
            raise ValueError(f"Relation {label!r} names the same entity twice; expected (e1,e2) or (e2,e1).")
        roles = (first, second) if subject_slot == "e1" else (second, first)
        return " ".join(roles).lower()
    typed = _TYPED.match(label)
    if typed:
        entity_type, name = typed.groups()
        words = name.replace("stateorprovince", "state or province").replace("/", " or ")
        if name in _SHARED_TACRED_NAMES:
            words = f"{_TYPE_WORDS.get(entity_type.lower(), entity_type)} {words}"
        label = words
    words = re.sub(r"[_\-:]+", " ", label).lower().split()
    if not words:
        raise ValueError(f"Relation label {label!r} has no words to verbalise; pass it in `label_words`.")
    return " ".join(words)


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def verbalize_labels(labels: Iterable[str], label_words: Mapping[str, str] | None = None) -> dict[str, str]:
    """`{raw label: words}` for a label set: `label_words` where given, else [`verbalize_relation`].

    Raises `ValueError` when two labels would read alike (case and spacing ignored, as a lower-casing
    tokenizer would), since the generated words could then not be mapped back to one label.
    """
    label_words = dict(label_words or {})
    for raw, words in label_words.items():
        if not isinstance(words, str) or not words.strip():
            raise ValueError(f"`label_words[{raw!r}]` must be a non-empty string; got {words!r}.")
    verbalised = {label: label_words.get(label) or verbalize_relation(label) for label in sorted(set(labels))}
    owner: dict[str, str] = {}
    for label, words in verbalised.items():
        other = owner.setdefault(_normalise(words), label)
        if other != label:
            raise ValueError(
                f"Relations {other!r} and {label!r} both verbalise to {words!r}, so a generated answer could "
                f"not be mapped back; give them distinct words with `label_words={{{label!r}: ...}}`."
            )
    return verbalised


def _check_template(template: str) -> None:
    names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    unknown = sorted(names - set(_TEMPLATE_FIELDS))
    if unknown or "sentence" not in names:
        raise ValueError(
            f"Relation template {template!r} must contain {{sentence}} and may use only "
            f"{{{'}, {'.join(_TEMPLATE_FIELDS)}}}; unknown placeholder(s): {unknown}."
        )


def _span(context: RecordContext, record: dict[str, Any], name: str, n_words: int) -> tuple[int, int]:
    start, end = context.integer(record, f"{name}_start"), context.integer(record, f"{name}_end")
    if not 0 <= start <= end < n_words:
        raise context.error(
            f"{name}_start/{name}_end",
            f"is ({start}, {end}), outside the {n_words} words or reversed",
            "Spans are inclusive word indices with 0 <= start <= end < len(token).",
        )
    return start, end


def _sentence(words: list[str], subj: tuple[int, int], obj: tuple[int, int]) -> str:
    """The words joined by spaces, the subject inside `@ ... @` and the object inside `# ... #`."""
    out: list[str] = []
    for position, word in enumerate(words):
        if position == subj[0]:
            out.append("@")
        if position == obj[0]:
            out.append("#")
        out.append(word)
        if position == obj[1]:
            out.append("#")
        if position == subj[1]:
            out.append("@")
    return " ".join(out)


def load_relation_extraction(
    source: str | os.PathLike[str],
    split: str | None = None,
    template: str = DEFAULT_RELATION_TEMPLATE,
    label_words: Mapping[str, str] | None = None,
    limit: int | None = None,
    *,
    entity_markers: bool = True,
    columns: Mapping[str, str] | None = None,
) -> Dataset:
    """TACRED-format relation extraction records as QA examples (see the module docstring).

    Columns: `id`, `question`, `answers` (`[label in words]`), `label` (raw relation), `subject`, `object`
    (entity words). `template` may use `{sentence}`, `{subj}`, `{obj}`, `{subj_type}`, `{obj_type}`.
    Raises `ValueError` naming the file, record and field for a missing or mistyped field, an empty
    `token`, a span out of range or reversed, and for two labels that verbalise alike.
    """
    _check_template(template)
    raw = read_source(source, split, columns=columns, limit=limit)
    words_of: dict[str, str] = {}

    def _convert(record: dict[str, Any], context: RecordContext) -> dict[str, Any]:
        tokens = context.text_list(record, "token", "words")
        words = [_PTB_BRACKETS.get(token, token) for token in tokens]
        subj, obj = _span(context, record, "subj", len(words)), _span(context, record, "obj", len(words))
        relation = context.text(record, "relation", "Give the relation label (e.g. 'no_relation').")
        if relation not in words_of:
            words_of[relation] = (label_words or {}).get(relation) or verbalize_relation(relation)
        subject, obj_text = " ".join(words[subj[0] : subj[1] + 1]), " ".join(words[obj[0] : obj[1] + 1])
        question = template.format(
            sentence=_sentence(words, subj, obj) if entity_markers else " ".join(words),
            subj=subject,
            obj=obj_text,
            subj_type=str(record.get("subj_type") or ""),
            obj_type=str(record.get("obj_type") or ""),
        )
        return {
            "question": question,
            "answers": [words_of[relation]],
            "label": relation,
            "subject": subject,
            "object": obj_text,
        }

    features = Features(
        {
            "id": Value("string"),
            "question": Value("string"),
            "answers": List(Value("string")),
            "label": Value("string"),
            "subject": Value("string"),
            "object": Value("string"),
        }
    )
    converted = map_records(raw, _convert, features, _REQUIRED, "Relation extraction records")
    verbalize_labels(relation_labels(converted), label_words)  # raises if two labels read alike
    return converted


def relation_labels(dataset: Dataset) -> list[str]:
    """The sorted distinct raw labels of a dataset made by [`load_relation_extraction`]."""
    if "label" not in dataset.column_names:
        raise ValueError(
            f"The dataset has no `label` column (columns: {dataset.column_names}); "
            "load it with `load_relation_extraction`."
        )
    return sorted(set(dataset["label"]))
