"""Tiny Hugging Face models built from a config (no download): a BERT encoder and a Llama decoder."""

import torch

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def word_tokenizer(folder, words):
    """A word-level BERT tokenizer over ``words``; asserts that the words really are in its vocabulary
    (transformers 5 ignores ``vocab_file`` and takes the vocabulary as ``vocab``)."""
    from transformers import BertTokenizer, BertTokenizerFast

    vocab = SPECIAL + [w for w in words if w not in SPECIAL]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    if tok.vocab_size != len(vocab):
        tok = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})
    assert tok.vocab_size == len(vocab) and "[UNK]" not in tok.tokenize(" ".join(words[:3]))
    return tok


def tiny_bert(folder, words, hidden=16, layers=2):
    from transformers import BertConfig, BertModel

    tok = word_tokenizer(folder, words)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                         intermediate_size=2 * hidden, max_position_embeddings=128)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def tiny_llama(folder, words, hidden=16, layers=2):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = word_tokenizer(folder, words)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=tok.vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                                 num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
                                 max_position_embeddings=128, pad_token_id=0)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
