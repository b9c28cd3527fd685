"""hf-etrag: train a dense retriever and a generator jointly, end to end, inside the Hugging Face Trainer."""

__version__ = "0.1.0"

from .callbacks import IndexRefreshCallback
from .configuration_etrag import EtragConfig
from .modeling_etrag import EtragModel, EtragOutput, EtragPreTrainedModel
from .objectives import available_objectives, build_objective, register_objective
from .peft_utils import PeftArguments, apply_peft
from .retrieval import PassageIndex, tokenize_corpus
from .trainer import EtragTrainer
from .training_args import EtragTrainingArguments

__all__ = [
    "EtragConfig",
    "EtragModel",
    "EtragOutput",
    "EtragPreTrainedModel",
    "EtragTrainer",
    "EtragTrainingArguments",
    "IndexRefreshCallback",
    "PassageIndex",
    "PeftArguments",
    "apply_peft",
    "available_objectives",
    "build_objective",
    "register_objective",
    "tokenize_corpus",
    "__version__",
]
