"""Dataset adapters: hand-computed outputs for tiny files built here, and clear errors for bad records."""

import json

import datasets
import pytest
from datasets import Dataset

from hf_etrag.data import adapters as adapters_module
from hf_etrag.data import (
    load_corpus,
    load_dialogue,
    load_open_qa,
    load_relation_extraction,
    relation_labels,
    tokenize_qa_dataset,
    verbalize_labels,
    verbalize_relation,
)


def _tacred_records():
    return [
        {
            "id": "r1",
            "token": ["Bill", "Gates", "founded", "Microsoft", "-LRB-", "1975", "-RRB-", "."],
            "subj_start": 0,
            "subj_end": 1,
            "obj_start": 3,
            "obj_end": 3,
            "subj_type": "PERSON",
            "obj_type": "ORGANIZATION",
            "relation": "org:founded_by",
        },
        {
            "id": "r2",
            "token": ["The", "fire", "caused", "smoke", "."],
            "subj_start": 3,
            "subj_end": 3,
            "obj_start": 1,
            "obj_end": 1,
            "relation": "Cause-Effect(e2,e1)",
        },
    ]


def _write_json(path, records):
    path.write_text(json.dumps(records))
    return path


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_relation_extraction_fills_the_template_with_marked_sentence(tmp_path):
    source = _write_json(tmp_path / "train.json", _tacred_records())
    dataset = load_relation_extraction(str(source))
    assert dataset.column_names == ["id", "question", "answers", "label", "subject", "object"]
    first, second = dataset[0], dataset[1]
    assert first["question"] == (
        "@ Bill Gates @ founded # Microsoft # ( 1975 ) . The relation between Bill Gates and Microsoft is"
    )
    assert (first["subject"], first["object"]) == ("Bill Gates", "Microsoft")
    assert first["answers"] == ["founded by"] and first["label"] == "org:founded_by"
    # the object comes before the subject here; the markers follow the spans, not the order
    assert second["question"] == "The # fire # caused @ smoke @ . The relation between smoke and fire is"
    assert second["answers"] == ["effect cause"] and second["label"] == "Cause-Effect(e2,e1)"
    assert relation_labels(dataset) == ["Cause-Effect(e2,e1)", "org:founded_by"]


def test_relation_template_label_words_and_unmarked_sentence(tmp_path):
    source = _write_json(tmp_path / "train.json", _tacred_records()[:1])
    dataset = load_relation_extraction(
        source,
        template="{subj} ({subj_type}) and {obj} ({obj_type}): {sentence}",
        label_words={"org:founded_by": "was founded by"},
        entity_markers=False,
    )
    assert dataset[0]["question"] == (
        "Bill Gates (PERSON) and Microsoft (ORGANIZATION): Bill Gates founded Microsoft ( 1975 ) ."
    )
    assert dataset[0]["answers"] == ["was founded by"]
    with pytest.raises(ValueError, match=r"unknown placeholder\(s\): \['relation'\]"):
        load_relation_extraction(source, template="{sentence} {relation}")


@pytest.mark.parametrize(
    ("label", "words"),
    [
        ("Cause-Effect(e1,e2)", "cause effect"),
        ("Cause-Effect(e2,e1)", "effect cause"),
        ("Component-Whole(e2,e1)", "whole component"),
        ("Entity-Destination(e1,e2)", "entity destination"),
        ("Instrument-Agency(e2,e1)", "agency instrument"),
        ("Other", "other"),
        ("per:city_of_birth", "city of birth"),
        ("org:number_of_employees/members", "number of employees or members"),
        ("per:stateorprovince_of_birth", "state or province of birth"),
        ("per:parents", "person parents"),
        ("org:parents", "organization parents"),
        ("no_relation", "no relation"),
    ],
)
def test_verbalize_relation(label, words):
    assert verbalize_relation(label) == words


def test_verbalize_labels_must_be_injective():
    assert verbalize_labels(["Other", "Cause-Effect(e1,e2)"]) == {
        "Cause-Effect(e1,e2)": "cause effect",
        "Other": "other",
    }
    with pytest.raises(ValueError, match=r"'Other' and 'other' both verbalise to 'other'"):
        verbalize_labels(["Other", "other"])
    with pytest.raises(ValueError, match="label_words"):
        verbalize_labels(["a", "b"], label_words={"a": "same", "b": "Same "})


def test_relation_loader_rejects_labels_that_read_alike(tmp_path):
    records = _tacred_records()
    records[1]["relation"] = "org:founded by"
    with pytest.raises(ValueError, match=r"'org:founded by' and 'org:founded_by' both verbalise"):
        load_relation_extraction(_write_json(tmp_path / "train.json", records))


def _tokenizer():
    from hf_etrag.tiny_models import train_wordpiece_tokenizer

    return train_wordpiece_tokenizer(["who when where ann oslo 1999"], vocab_size=60)


def test_open_qa_gold_ids_and_answer_layouts(tmp_path):
    records = [
        {"id": "q1", "question": "Who?", "answers": ["Ann", "Ann B."], "gold_passage_id": "p7"},
        {
            "id": "q2",
            "question": "When?",
            "answers": {"text": ["1999"], "answer_start": [4]},
            "gold_passage_id": 3,
        },
        {"id": "q3", "question": "Where?", "answers": ["Oslo"]},
    ]
    _write_jsonl(tmp_path / "validation.jsonl", records)
    dataset = load_open_qa(tmp_path, split="validation")
    assert dataset["id"] == ["q1", "q2", "q3"]
    assert dataset["answers"] == [["Ann", "Ann B."], ["1999"], ["Oslo"]]
    assert dataset["gold_passage_id"] == ["p7", "3", None]
    tokenized = tokenize_qa_dataset(dataset, _tokenizer(), passage_ids=["3", "p7"])
    assert tokenized["gold_passage_index"] == [1, 0, -1]
    assert load_open_qa(tmp_path / "validation.jsonl", limit=1)["id"] == ["q1"]


def test_dialogue_query_is_most_recent_turn_first(tmp_path):
    record = {
        "id": "d1",
        "history": ["Hi there.", "Hello!", "Do you garden?", " I grow tomatoes. "],
        "response": "Tomatoes need sun.",
        "gold_passage_id": "k1",
    }
    source = _write_jsonl(tmp_path / "train.jsonl", [record])
    dataset = load_dialogue(source, max_history_turns=2)
    assert dataset[0]["question"] == "I grow tomatoes. | Do you garden?"
    assert dataset[0]["answers"] == ["Tomatoes need sun."]
    assert dataset[0]["history"] == record["history"]
    assert dataset[0]["gold_passage_id"] == "k1"
    everything = load_dialogue(source, max_history_turns=None, turn_separator=" / ")
    assert everything[0]["question"] == "I grow tomatoes. / Do you garden? / Hello! / Hi there."
    with pytest.raises(ValueError, match="`max_history_turns` must be a positive integer"):
        load_dialogue(source, max_history_turns=0)


def test_corpus_ids_titles_and_default_split(tmp_path):
    _write_jsonl(
        tmp_path / "corpus.jsonl", [{"id": 1, "text": "One."}, {"id": "b", "title": "B", "text": "Two."}]
    )
    corpus = load_corpus(tmp_path)
    assert corpus.column_names == ["id", "title", "text"]
    assert corpus["id"] == ["1", "b"] and corpus["title"] == ["", "B"]


def _malformed(records_change):
    records = _tacred_records()
    records_change(records)
    return records


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        (lambda r: r[1].pop("relation"), "`relation`", "is missing"),
        (lambda r: r[1].update(relation=""), "`relation`", "is empty"),
        (lambda r: r[1].update(token=[]), "`token`", "is an empty list"),
        (lambda r: r[1].update(token="The fire caused smoke ."), "`token`", "must be a list of strings"),
        (lambda r: r[1].update(obj_end=5), "`obj_start/obj_end`", r"is \(1, 5\), outside the 5 words"),
        (
            lambda r: r[1].update(subj_start=4),
            "`subj_start/subj_end`",
            r"is \(4, 3\), outside .* or reversed",
        ),
        (lambda r: r[1].update(subj_start="3"), "`subj_start`", "must be an integer, got str '3'"),
        (lambda r: r[1].update(subj_start=2.5), "`subj_start`", "must be an integer, got float 2.5"),
    ],
)
def test_malformed_relation_records_name_record_and_field(tmp_path, change, field, problem):
    source = _write_json(tmp_path / "train.json", _malformed(change))
    with pytest.raises(ValueError, match=rf"train.json, record 'r2' \(position 1\): field {field} {problem}"):
        load_relation_extraction(source)


@pytest.mark.parametrize(
    ("loader", "records", "message"),
    [
        (
            load_open_qa,
            [{"id": "q1", "question": "Who?"}],
            r"record 'q1' \(line 1\): field `answers` is missing",
        ),
        (
            load_open_qa,
            [
                {"id": "q1", "question": "Who?", "answers": ["A"]},
                {"id": "q2", "question": "Who?", "answers": []},
            ],
            r"record 'q2' \(line 2\): field `answers` is an empty list",
        ),
        (
            load_open_qa,
            [{"id": "q1", "question": "Who?", "answers": "A"}],
            r"record 'q1' \(line 1\): field `answers` must be a list of strings",
        ),
        (load_open_qa, [{"id": "q1", "question": "  ", "answers": ["A"]}], r"'q1' .*`question` is empty"),
        (
            load_open_qa,
            [{"question": "Who?", "answers": ["A"], "gold_passage_id": ["p1"]}],
            r"record 'data-0' \(line 1\): field `gold_passage_id` must be a string id",
        ),
        (
            load_dialogue,
            [{"id": "d1", "history": [], "response": "Hi."}],
            r"record 'd1' \(line 1\): field `history` is empty. A dialogue turn needs",
        ),
        (
            load_dialogue,
            [{"id": "d1", "history": ["Hi."]}],
            r"record 'd1' \(line 1\): field `response` is missing",
        ),
        (
            load_corpus,
            [{"id": "p1", "text": "A."}, {"id": "p2", "text": " "}],
            r"record 'p2' \(line 2\): field `text` is empty",
        ),
        (
            load_corpus,
            [{"id": "p1", "text": "A."}, {"id": "p1", "text": "B."}],
            r"data.jsonl: Passage id 'p1' appears more than once",
        ),
    ],
)
def test_malformed_records_name_record_and_field(tmp_path, loader, records, message):
    source = _write_jsonl(tmp_path / "data.jsonl", records)
    with pytest.raises(ValueError, match=message):
        loader(source)


def test_fields_of_mixed_types_keep_the_values_the_file_holds(tmp_path):
    """datasets 5 would read "007" back as 7 from a column that mixes strings and integers."""
    records = [
        {"id": "q1", "question": "Who?", "answers": ["1999"], "gold_passage_id": "007"},
        {"id": "q2", "question": "When?", "answers": ["May"], "gold_passage_id": 7},
    ]
    dataset = load_open_qa(_write_jsonl(tmp_path / "train.jsonl", records))
    assert dataset["gold_passage_id"] == ["007", "7"]
    assert dataset["answers"] == [["1999"], ["May"]]
    records[1]["answers"] = "1999"
    with pytest.raises(
        ValueError, match=r"record 'q2' \(line 2\): field `answers` must be a list of strings, got '1999'"
    ):
        load_open_qa(_write_jsonl(tmp_path / "train.jsonl", records))


def test_unreadable_sources_are_reported(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"id": "q1", "question": "Who?", "answers": ["A"]}\n{broken\n')
    with pytest.raises(ValueError, match=r"Could not read .*train.jsonl as JSON"):
        load_open_qa(tmp_path / "train.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="empty.jsonl is empty"):
        load_open_qa(tmp_path / "empty.jsonl")
    with pytest.raises(ValueError, match=r"Split 'test' not found .* Available splits: \['empty', 'train'\]"):
        load_open_qa(tmp_path, split="test")
    with pytest.raises(ValueError, match="pass `split`"):
        load_open_qa(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        load_open_qa(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match=r"`limit` must be a positive integer"):
        load_open_qa(tmp_path / "train.jsonl", limit=0)


def test_hub_ids_go_through_load_dataset(monkeypatch):
    calls = []
    hub_rows = {
        "qid": ["h1", "h2"],
        "question": ["Who wrote it?", "Where is it?"],
        "answers": [
            {"text": ["Ann"], "answer_start": [0]},
            {"text": ["Oslo", "in Oslo"], "answer_start": [3, 0]},
        ],
    }

    def fake_load_dataset(path, split=None, **kwargs):
        calls.append((path, split, kwargs))
        return Dataset.from_dict(hub_rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    dataset = load_open_qa("someone/open-qa", split="validation", columns={"qid": "id"})
    assert calls == [("someone/open-qa", "validation", {})]
    assert dataset.to_dict() == {
        "id": ["h1", "h2"],
        "question": ["Who wrote it?", "Where is it?"],
        "answers": [["Ann"], ["Oslo", "in Oslo"]],
        "gold_passage_id": [None, None],
    }


def test_hub_dataset_without_split_must_choose_one(monkeypatch):
    splits = datasets.DatasetDict({"train": Dataset.from_dict({"question": ["q"], "answers": [["a"]]})})
    monkeypatch.setattr(datasets, "load_dataset", lambda path, split=None: splits)
    with pytest.raises(ValueError, match=r"several splits \['train'\]: pass `split`"):
        load_open_qa("someone/open-qa")


def test_agreed_interface_is_exported_from_data_and_adapters():
    import hf_etrag.data as data

    names = [
        "TACRED_NEGATIVE_LABEL", "SEMEVAL_NEGATIVE_LABEL", "DEFAULT_RELATION_TEMPLATE", "verbalize_relation",
        "load_relation_extraction", "load_open_qa", "load_dialogue", "load_corpus", "relation_labels",
    ]  # fmt: skip
    assert all(getattr(data, name) is getattr(adapters_module, name) for name in names)
    assert (data.TACRED_NEGATIVE_LABEL, data.SEMEVAL_NEGATIVE_LABEL) == ("no_relation", "Other")
    assert data.DEFAULT_RELATION_TEMPLATE == "{sentence} The relation between {subj} and {obj} is"
