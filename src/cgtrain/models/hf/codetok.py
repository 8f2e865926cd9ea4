"""A code tokenizer trained on the corpus: byte-level BPE over code-aware pieces.

Pre-tokenisation cuts code where a programmer would before BPE merges
anything: a newline with the next line's indentation is one piece (so
`\\n        ` becomes an indentation token), identifiers and numbers are
their own pieces (with at most one leading space, GPT-2 style), runs of
operator characters are pieces, other whitespace is a piece. Byte-level BPE
then learns sub-words inside those pieces only, so a merge never glues an
operator to a name. Any text encodes (bytes, no unknown token in practice).

The result is a `PreTrainedTokenizerFast` that `AutoTokenizer.from_pretrained`
loads from the output directory (tokenizer.json + tokenizer_config.json);
a single sequence is wrapped as `[CLS] ... [SEP]`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4, in this order
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(5)
# newline + indentation | identifier | number | operator run | other whitespace
CODE_PIECES = r"\n[ \t]*| ?[A-Za-z_][A-Za-z0-9_]*| ?[0-9][0-9A-Za-z_.]*| ?[^\sA-Za-z0-9_]+|\s+"


def train_code_tokenizer(texts: Iterable[str], vocab_size: int = 8000, model_max_length: int = 512,
                         min_frequency: int = 2):
    """A fast tokenizer (transformers' PreTrainedTokenizerFast) trained on `texts`."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CODE_PIECES), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    if [tok.token_to_id(s) for s in SPECIALS] != list(range(len(SPECIALS))):
        raise RuntimeError("special tokens did not get ids 0..4")  # pragma: no cover - tokenizers contract
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", CLS_ID), ("[SEP]", SEP_ID)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=model_max_length, pad_token="[PAD]",
                                   unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def load_code_tokenizer(directory: str | Path):
    from transformers import AutoTokenizer

    from cgtrain.quiet import hf_offline

    with hf_offline():
        return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
