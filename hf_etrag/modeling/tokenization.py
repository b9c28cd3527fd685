"""`EtragTokenizers`: the retriever's and the generator's tokenizers saved and loaded as one unit.

The Trainer saves its `processing_class` with every checkpoint and `push_to_hub` uploads it, so passing an
`EtragTokenizers` as `processing_class` keeps both tokenizers next to the weights that were trained with them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import snapshot_download
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from ..atomic import atomic_directory
from ..files import GENERATOR_TOKENIZER_FOLDER, RETRIEVER_TOKENIZER_FOLDER, TOKENIZER_OUTPUT

__all__ = ["EtragTokenizers", "RETRIEVER_TOKENIZER_FOLDER", "GENERATOR_TOKENIZER_FOLDER"]


def _save_atomically(tokenizer: PreTrainedTokenizerBase, folder: Path, **kwargs) -> list[str]:
    """`tokenizer.save_pretrained` into a temporary sibling, swapped into `folder` when complete (a kill while
    saving leaves the previous tokenizer, never a partial one); returns the files as they lie in `folder`."""
    with atomic_directory(folder, TOKENIZER_OUTPUT) as tmp:
        written = tokenizer.save_pretrained(str(tmp), **kwargs)
    return [str(folder / Path(name).name) for name in written]


@dataclass
class EtragTokenizers:
    """The query/document encoders' tokenizer and the generator's (`None`: the retriever's is shared).

    Saved as `retriever_tokenizer/` and, when distinct, `generator_tokenizer/` inside the model folder.
    """

    retriever: PreTrainedTokenizerBase
    generator: PreTrainedTokenizerBase | None = None

    @property
    def generator_tokenizer(self) -> PreTrainedTokenizerBase:
        return self.generator if self.generator is not None else self.retriever

    @property
    def shared(self) -> bool:
        return self.generator is None or self.generator is self.retriever

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> tuple[str, ...]:
        """Write both tokenizers into subfolders of `save_directory`; returns the files written."""
        folder = Path(save_directory)
        files = _save_atomically(self.retriever, folder / RETRIEVER_TOKENIZER_FOLDER, **kwargs)
        if not self.shared:
            files += _save_atomically(self.generator, folder / GENERATOR_TOKENIZER_FOLDER, **kwargs)
        return tuple(files)

    @classmethod
    def from_pretrained(cls, pretrained_path: str | os.PathLike, **kwargs) -> EtragTokenizers:
        """Load from a folder written by [`save_pretrained`], or from a Hub repo holding one (only the two tokenizer
        folders are downloaded; `revision`, `token` and `cache_dir` apply)."""
        folder = Path(pretrained_path)
        if not folder.is_dir():
            hub_kwargs = {k: kwargs[k] for k in ("revision", "token", "cache_dir") if k in kwargs}
            patterns = [f"{RETRIEVER_TOKENIZER_FOLDER}/*", f"{GENERATOR_TOKENIZER_FOLDER}/*"]
            folder = Path(snapshot_download(str(pretrained_path), allow_patterns=patterns, **hub_kwargs))
        retriever_folder = folder / RETRIEVER_TOKENIZER_FOLDER
        if not retriever_folder.is_dir():
            raise FileNotFoundError(
                f"{folder} holds no `{RETRIEVER_TOKENIZER_FOLDER}/`: it was not saved with tokenizers. Pass "
                "`processing_class=EtragTokenizers(...)` to the EtragTrainer, or load the tokenizers yourself."
            )
        retriever = AutoTokenizer.from_pretrained(str(retriever_folder), **kwargs)
        generator_folder = folder / GENERATOR_TOKENIZER_FOLDER
        generator = (
            AutoTokenizer.from_pretrained(str(generator_folder), **kwargs)
            if generator_folder.is_dir()
            else None
        )
        return cls(retriever=retriever, generator=generator)
