"""Sharing on the Hugging Face Hub: what a pushed [`EtragModel`] repo holds, and the upload itself.

A repo holds exactly: `config.json`, the weights (`model.safetensors`, or its shards, plus `*_adapter/` folders for
parts with PEFT adapters), the tokenizers (`retriever_tokenizer/`, `generator_tokenizer/`), `README.md` (the model
card) and, only when asked, the passage index (`passage_index/`). Pickles (`training_args.bin`), optimizer
states and `checkpoint-*` folders stay local. `EtragModel.from_pretrained(repo_id)`,
`EtragTokenizers.from_pretrained(repo_id)` and `PassageIndex.from_pretrained(repo_id)` read it back.

All calls go through a fresh `huggingface_hub.HfApi`, so `HF_ENDPOINT` (a mirror, or the local test server in
`tests/hub_server.py`) is honoured. [`EtragTrainer.push_to_hub`] owns a training run's push and uses the two
functions below; nothing here calls back into the trainer.
"""

from __future__ import annotations

import json
import os
import tempfile
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

from huggingface_hub import CommitInfo, HfApi

from ..adapters.checkpoint import CHECKPOINT_PATTERNS
from ..atomic import OutputFolderError
from ..files import GENERATOR_TOKENIZER_FOLDER, INDEX_FOLDER, MODEL_CARD_FILE, RETRIEVER_TOKENIZER_FOLDER
from .model_card import card_data_from_model, render_model_card

if TYPE_CHECKING:
    from ..modeling.tokenization import EtragTokenizers

__all__ = [
    "EtragHubMixin",
    "check_repo_is_ours",
    "create_model_repo",
    "upload_model_folder",
    "MODEL_PATTERNS",
    "INDEX_FOLDER",
]

MODEL_CARD = MODEL_CARD_FILE
MODEL_PATTERNS = [
    *CHECKPOINT_PATTERNS,
    MODEL_CARD,
    f"{RETRIEVER_TOKENIZER_FOLDER}/*",
    f"{GENERATOR_TOKENIZER_FOLDER}/*",
]
# Files of an earlier push that this push replaces: removed when the new model does not write them (a merged model
# pushed over an adapter one must not leave `generator_adapter/` behind, nor a shared tokenizer a stale second one).
_REPLACED_PATTERNS = [
    "model*.safetensors*",
    "*_adapter/*",
    f"{RETRIEVER_TOKENIZER_FOLDER}/*",
    f"{GENERATOR_TOKENIZER_FOLDER}/*",
]


def create_model_repo(repo_id: str, private: bool | None = None, token: str | bool | None = None) -> str:
    """Create `repo_id` unless it exists; returns its full id (`namespace/name`, the namespace filled in by the Hub)."""
    # A fresh HfApi per call: transformers' shared one keeps the endpoint it saw first.
    return HfApi(token=token).create_repo(repo_id, private=private, exist_ok=True).repo_id


def upload_model_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    push_index: bool = False,
    commit_message: str | None = None,
    commit_description: str | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    blocking: bool = True,
) -> CommitInfo | Future:
    """Commit the model files of `folder` (see the module docstring) to the existing repo `repo_id`, in one commit.

    `revision` must name an existing branch. With `push_index`, `folder/passage_index/` must exist.
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} holds no config.json: save the model there first.")
    patterns = list(MODEL_PATTERNS)
    if push_index:
        if not (folder / INDEX_FOLDER / "index_metadata.json").is_file():
            raise FileNotFoundError(
                f"`push_index=True` but {folder / INDEX_FOLDER} holds no saved index: attach one "
                "(`model.set_index(...)`) or keep `save_index_with_checkpoints=True` in the training arguments."
            )
        patterns.append(f"{INDEX_FOLDER}/*")
    api = HfApi(token=token)
    check_repo_is_ours(api, repo_id, revision)
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        allow_patterns=patterns,
        delete_patterns=_REPLACED_PATTERNS,
        commit_message=commit_message or "Upload EtragModel",
        commit_description=commit_description,
        revision=revision,
        create_pr=create_pr,
        run_as_future=not blocking,
    )


# Files a fresh Hub repo may hold before the first push.
_REPO_SCAFFOLD = {".gitattributes", "README.md"}


def check_repo_is_ours(api: HfApi, repo_id: str, revision: str | None = None) -> None:
    """Refuse to push into a repo that holds another model: a push replaces `config.json`, `README.md` and the
    weights and removes `model*.safetensors*`, tokenizer and adapter files, which must only ever be an earlier
    hf-etrag push's (an `EtragModel` config, `model_type: etrag`). Raises [`OutputFolderError`]; nothing is sent."""
    files = sorted(set(api.list_repo_files(repo_id, revision=revision)) - _REPO_SCAFFOLD)
    if not files:
        return
    model_type = None
    if "config.json" in files:
        config_path = api.hf_hub_download(repo_id, "config.json", revision=revision)
        try:
            model_type = json.loads(Path(config_path).read_text(encoding="utf-8")).get("model_type")
        except (ValueError, UnicodeDecodeError, AttributeError):
            model_type = None
    if model_type == "etrag":
        return
    shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
    what = f"a `{model_type}` model" if model_type else "files that no hf-etrag push wrote"
    raise OutputFolderError(
        f"Hub repo {repo_id!r} holds {what} ({shown}). Pushing would replace its config.json, README.md and weights "
        "and remove its model*.safetensors, tokenizer and adapter files, so nothing was sent. Push to a new repo "
        "id, or to a repo that an earlier hf-etrag push created."
    )


class EtragHubMixin:
    """`push_to_hub` for [`EtragModel`]: config, weights, tokenizers, model card and optionally the index."""

    def push_to_hub(
        self,
        repo_id: str,
        *,
        tokenizers: EtragTokenizers | None = None,
        push_index: bool = False,
        model_card: str | None = None,
        commit_message: str | None = None,
        commit_description: str | None = None,
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        max_shard_size: int | str = "50GB",
        tags: list[str] | None = None,
    ) -> CommitInfo:
        """Upload this model to `repo_id` (created if needed) in one commit.

        Args:
            tokenizers: saved as `retriever_tokenizer/` (+ `generator_tokenizer/`) so that users get the
                tokenizers the model was trained with.
            push_index: also upload the attached [`PassageIndex`] as `passage_index/` (corpus, embeddings,
                FAISS index); `PassageIndex.from_pretrained(repo_id)` loads it.
            model_card: the README text; default: a card rendered from this model (objective, bases, PEFT,
                usage). [`EtragTrainer.push_to_hub`] writes a fuller one (data, hyperparameters, metrics).
            Other arguments as in `PreTrainedModel.push_to_hub`.
        """
        repo_id = create_model_repo(repo_id, private=private, token=token)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "model"
            self.save_pretrained(folder, max_shard_size=max_shard_size)
            if tokenizers is not None:
                tokenizers.save_pretrained(folder)
            if push_index:
                self.index.save(folder / INDEX_FOLDER)
            if model_card is None:
                data = card_data_from_model(
                    self, model_name=repo_id.split("/")[-1], repo_id=repo_id, tags=tags
                )
                data.shared_tokenizer = None if tokenizers is None else tokenizers.shared
                data.has_index = push_index
                model_card = render_model_card(data)
            (folder / MODEL_CARD).write_text(model_card, encoding="utf-8")
            return upload_model_folder(
                folder,
                repo_id,
                push_index=push_index,
                commit_message=commit_message,
                commit_description=commit_description,
                token=token,
                revision=revision,
                create_pr=create_pr,
            )
