"""hf-etrag: train a dense retriever and a generator jointly, end to end, inside the Hugging Face Trainer.

The exports load on first use (a module-level `__getattr__`, as transformers' `_LazyModule` does), so that
`import hf_etrag` and `hf-etrag --help` do not import torch, transformers and datasets;
`from hf_etrag import EtragModel` imports what `EtragModel` needs, and nothing else.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module (relative to this package) that defines it.
_EXPORTS: dict[str, str] = {
    "DataArguments": "recipes.arguments",
    "EtragConfig": "modeling.configuration",
    "EtragModel": "modeling.model",
    "EtragOutput": "modeling.model",
    "EtragPreTrainedModel": "modeling.model",
    "EtragTokenizers": "modeling.tokenization",
    "EtragTrainer": "training.trainer",
    "EtragTrainingArguments": "training.arguments",
    "IndexRefreshCallback": "training.callbacks",
    "ModelArguments": "recipes.arguments",
    "PassageIndex": "retrieval",
    "PeftArguments": "adapters.apply",
    "apply_peft": "adapters.apply",
    "available_objectives": "objectives",
    "build_objective": "objectives",
    "register_objective": "objectives",
    "tokenize_corpus": "retrieval",
}

__all__ = [  # the names of `_EXPORTS` (a test keeps the two equal), written out for linters and readers
    "DataArguments",
    "EtragConfig",
    "EtragModel",
    "EtragOutput",
    "EtragPreTrainedModel",
    "EtragTokenizers",
    "EtragTrainer",
    "EtragTrainingArguments",
    "IndexRefreshCallback",
    "ModelArguments",
    "PassageIndex",
    "PeftArguments",
    "apply_peft",
    "available_objectives",
    "build_objective",
    "register_objective",
    "tokenize_corpus",
    "__version__",
]

if TYPE_CHECKING:  # what type checkers and editors see; at run time `__getattr__` imports on demand
    from .adapters.apply import PeftArguments, apply_peft
    from .modeling.configuration import EtragConfig
    from .modeling.model import EtragModel, EtragOutput, EtragPreTrainedModel
    from .modeling.tokenization import EtragTokenizers
    from .objectives import available_objectives, build_objective, register_objective
    from .recipes.arguments import DataArguments, ModelArguments
    from .retrieval import PassageIndex, tokenize_corpus
    from .training.arguments import EtragTrainingArguments
    from .training.callbacks import IndexRefreshCallback
    from .training.trainer import EtragTrainer


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
