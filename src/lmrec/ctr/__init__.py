"""Click-through-rate (like / dislike) prediction: examples from labelled splits, models, metrics.

``ctr_examples(split, part)`` turns a labelled split (e.g. ``movielens-1m-collm``) into rows of (user,
candidate item, label, the user's liked items before that moment). Models share ``fit(train, valid)`` /
``predict(examples) -> probabilities``: ``IdFM`` (factorisation machine on user and item IDs),
``FrozenEncoderMLP`` (frozen language-model vectors of history and candidate -> MLP) and
``CrossEncoderCTR`` (a Hugging Face model reads "history titles [SEP] candidate title" and is fine-tuned
with BCE; BERT-family or decoder-only backbones, full / LoRA / top-k / frozen tuning).
"""

from lmrec.ctr.data import CTRExamples, ctr_examples
from lmrec.ctr.metrics import auc, log_loss
from lmrec.ctr.models import CTR_MODELS, CrossEncoderCTR, CTRModel, FrozenEncoderMLP, IdFM, create_ctr
from lmrec.ctr.rerank import Reranked

__all__ = ["CTRExamples", "CTRModel", "CTR_MODELS", "CrossEncoderCTR", "FrozenEncoderMLP", "IdFM", "Reranked", "auc",
           "create_ctr", "ctr_examples", "log_loss"]
