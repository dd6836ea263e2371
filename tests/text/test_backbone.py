"""The one Hugging Face backbone module: hidden sizes under every family's name, pooling by hand, tuning
errors, and a guard that nothing else in lmrec imports transformers, peft or sentence_transformers."""

import re
from pathlib import Path

import pytest
import torch

from lmrec.errors import ConfigError
from lmrec.text import backbone
from lmrec.text.backbone import EncoderError, TuningOptions

SRC = Path(__file__).resolve().parents[2] / "src" / "lmrec"


@pytest.mark.parametrize("config,size", [({"hidden_size": 32}, 32), ({"d_model": 48}, 48), ({"n_embd": 64}, 64),
                                         ({"dim": 16}, 16)])
def test_hidden_size_under_each_familys_name(config, size):
    assert backbone.hidden_size(config) == size


def test_unknown_hidden_size_is_one_line_naming_the_file():
    with pytest.raises(EncoderError, match="x/config.json: cannot tell the hidden size"):
        backbone.hidden_size({"vocab_size": 3}, "x/config.json")


def test_pooling_by_hand():
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [9.0, 9.0]],   # 2 real tokens, then padding
                           [[2.0, 2.0], [4.0, 0.0], [6.0, 4.0]]])  # 3 real tokens
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    torch.testing.assert_close(backbone.pool(hidden, mask, "mean"), torch.tensor([[2.0, 1.0], [4.0, 2.0]]))
    torch.testing.assert_close(backbone.pool(hidden, mask, "cls"), torch.tensor([[1.0, 0.0], [2.0, 2.0]]))
    torch.testing.assert_close(backbone.pool(hidden, mask, "last-token"), torch.tensor([[3.0, 2.0], [6.0, 4.0]]))
    # left padding puts every row's last real token at the end
    torch.testing.assert_close(backbone.pool(hidden, mask, "last-token", "left"), torch.tensor([[9.0, 9.0], [6.0, 4.0]]))


def test_default_pooling_follows_the_architecture():
    assert backbone.default_pooling({"architectures": ["LlamaForCausalLM"]}) == "last-token"
    assert backbone.default_pooling({"architectures": ["BertModel"]}) == "mean"


def test_tuning_options_are_checked():
    with pytest.raises(ConfigError, match="top_k must be between 1 and the model's 2 layers"):
        layers = torch.nn.ModuleList([torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)])
        backbone.apply_tuning(torch.nn.Sequential(layers), TuningOptions(tuning="top-k", top_k=3))


def test_only_the_backbone_imports_hugging_face_libraries():
    pattern = re.compile(r"^\s*(from|import)\s+(transformers|peft|sentence_transformers)\b", re.M)
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                 if p.name != "backbone.py" and pattern.search(p.read_text())]
    assert offenders == []


def test_no_loader_can_unpickle_a_file():
    pattern = re.compile(r"allow_pickle\s*=\s*True|\bpickle\.|weights_only\s*=\s*False|torch\.load\((?![^)]*weights_only=True)")
    offenders = [f"{p.relative_to(SRC)}: {m.group(0)}" for p in SRC.rglob("*.py") for m in pattern.finditer(p.read_text())]
    assert offenders == []
