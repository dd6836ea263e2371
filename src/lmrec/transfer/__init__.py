"""Cross-domain transfer: pretrain a text-based sequence model on source domains, transfer it to a target.

``pretrain`` -> a ``PretrainedArtifact`` folder; ``transfer`` / ``transfer_grid`` apply it to a target
domain in one of ``MODES`` on a share of the target's training users.
"""

from lmrec.models.pretrained import PretrainedArtifact
from lmrec.transfer.pretrain import PretrainConfig, pretrain
from lmrec.transfer.workflow import FRACTIONS, MODES, Target, keep_users, transfer, transfer_grid

__all__ = ["FRACTIONS", "MODES", "PretrainConfig", "PretrainedArtifact", "Target", "keep_users", "pretrain",
           "transfer", "transfer_grid"]
