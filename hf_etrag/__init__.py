"""hf-etrag: train a dense retriever and a generator jointly, end to end, inside the Hugging Face Trainer."""

__version__ = "0.1.0"

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

__all__ = [
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
