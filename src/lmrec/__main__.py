"""``python -m lmrec ...`` runs the CLI (what ``torchrun -m lmrec train ...`` starts in every process)."""

from lmrec.cli import run

run()
