"""Click-through-rate (like / dislike) prediction: examples from labelled splits, models, metrics.

``ctr_examples(split, part)`` turns a labelled split (e.g. ``movielens-1m-collm``) into rows of (user,
candidate item, label, the user's liked items before that moment). Models share ``fit(train, valid)`` /
``predict(examples) -> probabilities``: ``IdFM`` (factorisation machine on user and item IDs),
``FrozenEncoderMLP`` (frozen language-model vectors of history and candidate -> MLP) and
``CrossEncoderCTR`` (a Hugging Face model reads "history titles [SEP] candidate title" and is fine-tuned
with BCE; BERT-family or decoder-only backbones, full / LoRA / top-k / frozen tuning).
Two-stage: ``Reranked`` reorders a retriever's top k with a CTR model or with ``RelevanceMLP``, which is
trained on which of the retriever's candidates users pick next (no labels needed). All are registered in
``lmrec.registry`` (kinds ``ctr`` and ``reranker``).
"""

from lmrec.ctr.data import CTRExamples, ctr_examples
from lmrec.ctr.metrics import auc, log_loss
from lmrec.ctr.models import CrossEncoderCTR, CTRModel, FrozenEncoderMLP, IdFM
from lmrec.ctr.relevance import CandidateLists, RelevanceMLP, candidate_lists
from lmrec.ctr.rerank import Reranked

__all__ = ["CTRExamples", "CTRModel", "CandidateLists", "CrossEncoderCTR", "FrozenEncoderMLP", "IdFM",
           "RelevanceMLP", "Reranked", "auc", "candidate_lists", "ctr_examples", "log_loss"]
