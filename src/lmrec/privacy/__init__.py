"""Privacy: checking what a trained model gives away about the users it was trained on."""

from lmrec.privacy.attack import AttackResult, membership_attack, sequence_losses, shadow_attack

__all__ = ["AttackResult", "membership_attack", "sequence_losses", "shadow_attack"]
