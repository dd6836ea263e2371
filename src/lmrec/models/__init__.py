"""Recommenders, one module each; ``lmrec.registry`` lists them by name."""

from lmrec.models.base import Model, Recommender
from lmrec.models.bert4rec import BERT4Rec
from lmrec.models.ease import EASE
from lmrec.models.fusion import Fusion
from lmrec.models.gru4rec import GRU4Rec
from lmrec.models.hybrid_ncf import HybridNCF
from lmrec.models.knn import ItemKNN, UserKNN
from lmrec.models.lightgcn import LightGCN
from lmrec.models.lm_content import LMContent
from lmrec.models.mf import ALS, BPR
from lmrec.models.multvae import MultVAE
from lmrec.models.popularity import Popularity
from lmrec.models.sasrec import SASRec
from lmrec.models.textseq import TextSeqRec
from lmrec.models.tfidf import TfidfContent
from lmrec.models.two_tower import TwoTowerLM

__all__ = ["ALS", "BERT4Rec", "BPR", "EASE", "Fusion", "GRU4Rec", "HybridNCF", "ItemKNN", "LightGCN", "LMContent", "Model", "MultVAE", "Popularity", "Recommender", "SASRec", "TextSeqRec", "TfidfContent", "TwoTowerLM", "UserKNN"]
