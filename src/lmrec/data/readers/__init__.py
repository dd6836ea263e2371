"""One module per source format; every reader returns a ``lmrec.data.Dataset``."""

from lmrec.data.readers.amazon import read_amazon
from lmrec.data.readers.collm import read_collm
from lmrec.data.readers.generic import ColumnMap, ItemColumns, read_generic
from lmrec.data.readers.lcrec import read_lcrec
from lmrec.data.readers.movielens import read_movielens_1m, read_movielens_100k
from lmrec.data.readers.recbole import read_atomic, read_recbole
from lmrec.data.readers.sequences import read_sequence_file
from lmrec.data.readers.urllm import read_urllm

__all__ = [
    "ColumnMap", "ItemColumns", "read_amazon", "read_atomic", "read_collm", "read_generic", "read_lcrec",
    "read_movielens_100k", "read_movielens_1m", "read_recbole", "read_sequence_file", "read_urllm",
]
