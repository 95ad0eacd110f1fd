"""The reference solutions of lesson 01 (byte-level BPE) against independent oracles.

Oracles: tiktoken's Rust BPE, built from the reference's trained vocabulary as mergeable ranks and
GPT-2's pattern, must encode (and decode) exactly as the reference; the Hugging Face `tokenizers`
`Split` pre-tokenizer (the Oniguruma regex engine) for the pretokenization pattern; `str.replace`
(left to right, non-overlapping) for `merge_pair`; `collections.Counter` for pair counts; and a
plain recount-everything trainer written from the spec for `train_bpe`. Text is drawn by
Hypothesis: arbitrary Unicode, and small corpora over two or three letters where ties and
overlapping pairs are frequent.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Regex, pre_tokenizers

from course.loader import load_notebook

NOTEBOOK = Path(__file__).resolve().parents[1] / "solutions/01/tokenizer.ipynb"
ORACLE = settings(derandomize=True, database=None, deadline=None, max_examples=200)
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
CORPUS_VOCAB_SIZE = 1024

TRICKY = ["'s", "'t", "'re", "'ll", "'S", "'", " ", "  ", "\t", "\n\n", "\r\n", "\u00a0", "\u3000", "a", "Z",
          " the", "token", "café", "e\u0301", "12", " 345", "٣", ".", "!?", "...", "中", "文", "，", "😀",
          "👍🏽", "\u200d", "<|endoftext|>"]
# Characters assigned in Python's Unicode database: the regex libraries' tables disagree about newer ones
# (U+323B0, CJK extension H, is a letter for `regex` but not for Oniguruma).
assigned = st.characters(exclude_categories=("Cs", "Cn"))
unicode_text = st.one_of(st.text(assigned, max_size=60),
                         st.lists(st.sampled_from(TRICKY), max_size=30).map("".join))
small_corpus = st.tuples(
    st.sampled_from(["ab ", "aab c", "ab", "abc\n", "aé中 "]).flatmap(lambda a: st.text(a, max_size=200)),
    st.integers(256, 256 + 40),
)


@pytest.fixture(scope="module")
def ref():
    return load_notebook(NOTEBOOK, module_name="reference_01_oracles").module


@pytest.fixture(scope="module")
def corpus_tokenizer(ref):
    """The reference trained on the course corpus, and tiktoken built from its ranks."""
    from course.data import corpus_text

    vocab, merges = ref.train_bpe(corpus_text("train"), CORPUS_VOCAB_SIZE)
    return vocab, merges, tiktoken_encoding(vocab)


def tiktoken_encoding(vocab: dict[int, bytes]) -> tiktoken.Encoding:
    # a token's rank is its id: lower ids were merged first
    return tiktoken.Encoding(name="course-bpe", pat_str=GPT2_PATTERN,
                             mergeable_ranks={token: i for i, token in vocab.items()}, special_tokens={})


def recount_trainer(text: str, vocab_size: int) -> list[tuple[int, int]]:
    """train_bpe's spec, done the slow and obvious way: recount every pair of every pretoken."""
    vocab = {i: bytes([i]) for i in range(256)}
    split = pre_tokenizers.Split(Regex(GPT2_PATTERN), behavior="isolated")
    pieces = [list(piece.encode("utf-8")) for piece, _ in split.pre_tokenize_str(text)]
    merges: list[tuple[int, int]] = []
    while len(vocab) < vocab_size:
        counts = Counter(pair for ids in pieces for pair in zip(ids, ids[1:]))
        if not counts:
            break
        best = max(counts, key=lambda p: (counts[p], vocab[p[0]], vocab[p[1]]))
        new_id = 256 + len(merges)
        merges.append(best)
        vocab[new_id] = vocab[best[0]] + vocab[best[1]]
        pieces = [merge_by_replace(ids, best, new_id) for ids in pieces]
    return merges


def merge_by_replace(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """`str.replace` is left to right and non-overlapping: map ids to characters and use it."""
    text = "".join(map(chr, ids))
    return [ord(c) for c in text.replace(chr(pair[0]) + chr(pair[1]), chr(new_id))]


# -- pretokenize, get_pair_counts, merge_pair ----------------------------------------------------


@ORACLE
@given(unicode_text)
def test_pretokenize_matches_oniguruma_split(ref, text):
    split = pre_tokenizers.Split(Regex(GPT2_PATTERN), behavior="isolated")
    assert ref.pretokenize(text) == [piece for piece, _ in split.pre_tokenize_str(text)]


@ORACLE
@given(st.lists(st.integers(0, 5), max_size=40))
def test_get_pair_counts_matches_counter(ref, ids):
    assert ref.get_pair_counts(ids) == Counter(zip(ids, ids[1:]))


@ORACLE
@given(st.lists(st.integers(0, 3), max_size=40), st.integers(0, 3), st.integers(0, 3))
def test_merge_pair_matches_str_replace(ref, ids, a, b):
    before = list(ids)
    assert ref.merge_pair(ids, (a, b), 99) == merge_by_replace(ids, (a, b), 99)
    assert ids == before


# -- train_bpe -----------------------------------------------------------------------------------


@ORACLE
@given(small_corpus)
def test_train_bpe_matches_the_recount_trainer(ref, case):
    text, vocab_size = case
    vocab, merges = ref.train_bpe(text, vocab_size)
    assert merges == recount_trainer(text, vocab_size)
    assert len(vocab) == 256 + len(merges)
    assert all(vocab[256 + r] == vocab[a] + vocab[b] for r, (a, b) in enumerate(merges))


def test_train_bpe_is_greedy_prefix(ref):
    """Training to a smaller size gives a prefix of the merges of a larger one."""
    text = "the cat sat on the mat; the dog sat on the log. 猫坐在垫子上。" * 20
    small, large = ref.train_bpe(text, 300)[1], ref.train_bpe(text, 400)[1]
    assert large[: len(small)] == small


# -- encode and decode against tiktoken ----------------------------------------------------------


@ORACLE
@given(small_corpus, unicode_text)
def test_encode_matches_tiktoken_on_small_vocabularies(ref, case, text):
    vocab, merges = ref.train_bpe(*case)
    enc = tiktoken_encoding(vocab)
    for sample in (text, case[0]):
        assert ref.encode(sample, merges) == enc.encode_ordinary(sample)


def test_encode_matches_tiktoken_on_the_corpus(ref, corpus_tokenizer):
    from course.data import corpus_text

    vocab, merges, enc = corpus_tokenizer
    assert len(merges) == CORPUS_VOCAB_SIZE - 256
    for split in ("train", "validation"):
        text = corpus_text(split)
        assert ref.encode(text, merges) == enc.encode_ordinary(text), split


@ORACLE
@given(unicode_text)
def test_encode_matches_tiktoken_on_unicode_text(ref, corpus_tokenizer, text):
    vocab, merges, enc = corpus_tokenizer
    assert ref.encode(text, merges) == enc.encode_ordinary(text)


@ORACLE
@given(unicode_text)
def test_decode_inverts_encode(ref, corpus_tokenizer, text):
    vocab, merges, _ = corpus_tokenizer
    assert ref.decode(ref.encode(text, merges), vocab) == text


@ORACLE
@given(st.lists(st.integers(0, CORPUS_VOCAB_SIZE - 1), max_size=20))
def test_decode_matches_tiktoken_on_any_ids(ref, corpus_tokenizer, ids):
    vocab, _, enc = corpus_tokenizer
    assert ref.decode(ids, vocab) == enc.decode(ids)  # tiktoken decodes with errors="replace"
