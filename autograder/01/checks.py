"""Hidden tests of lesson 01, byte-level BPE tokenization.

Each property calls the student's function in the sandbox and the reference here, on inputs drawn
by Hypothesis: Unicode text built from tricky fragments (contractions, digits, whitespace runs,
CJK, emoji, combining marks) and arbitrary text, and small corpora over alphabets of two or three
letters, where ties between pair counts and overlapping pairs ("aaa") are frequent. Answers are
discrete, so they must match the reference exactly.
"""

from __future__ import annotations

import functools
import random
import types
from collections import Counter
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from autograder.compare import Failure, expect, expect_equal
from autograder.harness import Suite

STANDINS = r'''
from collections import Counter as _Counter

import regex as _regex

_GPT2 = _regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def pretokenize(text):
    return _GPT2.findall(text)


def get_pair_counts(ids):
    return dict(_Counter(zip(ids, ids[1:])))


def merge_pair(ids, pair, new_id):
    out, skip = [], False
    for i, x in enumerate(ids):
        if skip:
            skip = False
        elif i + 1 < len(ids) and x == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            skip = True
        else:
            out.append(x)
    return out
'''

suite = Suite("01", standins=STANDINS)

# Pieces of text where tokenizers go wrong: contractions (GPT-2's are lowercase only), letters,
# digits and symbols of several scripts, whitespace runs, combining marks, emoji, and words that
# the reference tokenizer below has merges for.
FRAGMENTS = [
    "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'x", "'", "don", "I",
    " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\u00a0", "\u3000",
    "a", "Z", "the", " the", " and", "token", "ization", "café", "e\u0301", "naïve",
    "1", "23", " 2024", "٣", "½", ".", ",", "!?", "...", "(", ")", "—", "#", "<|", "|>",
    "中", "文", "中文", "的", "你好", "，", "。", "😀", "👍🏽", "🇫🇷", "\u200d", "Ω", "ß", "한국어",
]

# The reference tokenizer of the encode and decode tests is trained on this text.
REF_TEXT = """\
The tokenizer doesn't know words; it knows bytes. It's trained on text like this, and we'll see
what it learns. They're here, I'm there, you've been told, he'd agree.
    def tokenize(text):
        return [token for token in text.split()]

In 2024, 1,234 tokens cost $0.50 -- or 50% less!?  Tabs\tand  double  spaces.
分词器把文本切成词元。中文没有空格，所以预分词会把一整句当作一个片段。你好，世界！
café naïve résumé — emoji 😀😀 👍 🇫🇷
""" * 3
REF_VOCAB_SIZE = 256 + 250

ALPHABETS = ["ab ", "aab c", "ab", "abc\n", "a b'", "aé中 "]


def _show(text: str, limit: int = 80) -> str:
    shown = repr(text) if len(text) <= limit else repr(text[:limit]) + "..."
    return f"{shown} ({len(text)} characters)" if len(text) > 10 else shown


@functools.cache
def _ref_tokenizer(ref: types.ModuleType) -> tuple[dict[int, bytes], list[tuple[int, int]]]:
    return ref.train_bpe(REF_TEXT, REF_VOCAB_SIZE)


@functools.cache
def _timing_text(n_words: int = 40_000, n_types: int = 400, seed: int = 0) -> str:
    """A Zipf-distributed text of made-up words: few distinct pretokens, many occurrences."""
    rng = random.Random(seed)
    syllables = ["ka", "to", "ri", "mu", "sen", "la", "do", "pi", "ne", "gu", "the", "and", "ing", "er",
                 "qu", "zo"]
    types_: set[str] = set()
    while len(types_) < n_types:
        types_.add("".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))))
    words = sorted(types_)
    rng.shuffle(words)
    chosen = rng.choices(words, [1 / (r + 1) for r in range(n_types)], k=n_words)
    separators = [" ", " ", " ", " ", ", ", ". ", "\n"]
    return "".join(w + rng.choice(separators) for w in chosen)


@dataclass
class Text:
    text: str

    def __repr__(self) -> str:
        return f"text={_show(self.text)}"


@dataclass
class Corpus:
    """A training text and a vocabulary size; the repr is what feedback shows."""

    text: str
    vocab_size: int

    def __repr__(self) -> str:
        return f"text={_show(self.text)}, vocab_size=256 + {self.vocab_size - 256}"


@dataclass
class Ids:
    ids: list[int]

    def __repr__(self) -> str:
        return f"ids={self.ids}"


@dataclass
class Merge:
    ids: list[int]
    pair: tuple[int, int]
    new_id: int

    def __repr__(self) -> str:
        return f"ids={self.ids}, pair={self.pair}, new_id={self.new_id}"


@dataclass
class EncodeCase:
    corpus: Corpus  # the merges come from the reference trained on it
    text: str

    def __repr__(self) -> str:
        return f"merges of train_bpe({self.corpus!r}), encoding text={_show(self.text)}"


# Any code point but the surrogates, which UTF-8 cannot encode. (Named explicitly: st.text()'s default,
# characters(codec="utf-8"), takes seconds to set up in every fresh grading process.)
any_character = st.characters(exclude_categories=("Cs",))
unicode_text = st.one_of(
    st.lists(st.sampled_from(FRAGMENTS), max_size=24).map("".join),
    st.text(any_character, max_size=40),
).map(Text)

small_corpora = st.builds(
    Corpus,
    st.sampled_from(ALPHABETS).flatmap(lambda a: st.text(alphabet=a, min_size=20, max_size=300)),
    st.integers(257, 256 + 30),
)

word_corpora = st.builds(
    Corpus,
    st.lists(st.sampled_from(FRAGMENTS[:40]), min_size=5, max_size=60).map("".join),
    st.integers(257, 256 + 60),
)

small_ids = st.one_of(
    st.lists(st.sampled_from([97, 98]), max_size=30),
    st.lists(st.sampled_from([97, 98, 99, 256, 300]), max_size=30),
    st.lists(st.integers(0, 600), max_size=30),
)


@st.composite
def merge_cases(draw: st.DrawFn) -> Merge:
    alphabet = draw(st.sampled_from([[97], [97, 98], [97, 98, 99], [1, 256, 300]]))
    ids = draw(st.lists(st.sampled_from(alphabet), max_size=30))
    pair = (draw(st.sampled_from(alphabet)), draw(st.sampled_from(alphabet)))
    return Merge(ids, pair, draw(st.sampled_from([257, 1000])))  # a fresh id, as in training


@st.composite
def encode_cases(draw: st.DrawFn) -> EncodeCase:
    alphabet = draw(st.sampled_from(ALPHABETS))
    corpus = Corpus(draw(st.text(alphabet=alphabet, min_size=20, max_size=200)),
                    draw(st.integers(257, 256 + 30)))
    return EncodeCase(corpus, draw(st.text(alphabet=alphabet, max_size=60)))


def _expect_list_unchanged(before: list[Any], after: Any, name: str) -> None:
    expect(after == before, f"your function changed its input `{name}` (it became {after!r:.120}); graded "
                            "functions must not modify their inputs: build a new list instead")


def _expect_training(got: Any, want: tuple[dict[int, bytes], list[tuple[int, int]]], text: str,
                     ref: types.ModuleType) -> None:
    """train_bpe's answer equals the reference's; a wrong merge is explained with its counts."""
    expect(isinstance(got, (tuple, list)) and len(got) == 2,
           f"train_bpe must return a tuple (vocab, merges), got {type(got).__name__}")
    got_vocab, got_merges = got
    want_vocab, want_merges = want
    expect(isinstance(got_merges, list), f"merges must be a list, not {type(got_merges).__name__}")
    got_merges = [tuple(m) if isinstance(m, (list, tuple)) else m for m in got_merges]
    if got_merges != want_merges:
        raise Failure(_explain_merges(got_merges, want_merges, text, want_vocab, ref))
    expect_equal(got_vocab, want_vocab, "the vocabulary")


def _explain_merges(got: list[Any], want: list[tuple[int, int]], text: str, vocab: dict[int, bytes],
                    ref: types.ModuleType) -> str:
    """Which merge differs first, and how often each of the two pairs occurred at that step."""
    step = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
    head = f"the merges differ first at merge {step}: "
    if step >= len(want):
        return head + (f"you made {len(got)} merges, expected {len(want)}: stop when len(vocab) == "
                       "vocab_size, or when no pretoken has two tokens left")
    if step >= len(got):
        return head + (f"you made only {len(got)} merges, expected {len(want)} (a pair was still left "
                       f"to merge: {want[step]})")
    words = list(Counter(ref.pretokenize(text)).items())
    pieces = [list(w.encode("utf-8")) for w, _ in words]
    for r, pair in enumerate(want[:step]):
        pieces = [ref.merge_pair(ids, pair, 256 + r) for ids in pieces]
    counts: dict[tuple[int, int], int] = {}
    for ids, (_, freq) in zip(pieces, words):
        for pair, n in ref.get_pair_counts(ids).items():
            counts[pair] = counts.get(pair, 0) + n * freq

    def describe(pair: Any) -> str:
        try:
            a, b = pair
            n = counts.get((a, b), 0)
            times = "time" if n == 1 else "times"
            return f"{tuple(pair)} = ({vocab[a]!r}, {vocab[b]!r}), which occurs {n} {times}"
        except (TypeError, ValueError, KeyError):
            return repr(pair)

    return head + (f"you merged {describe(got[step])}; expected {describe(want[step])}. Count pairs "
                   "inside pretokens only, overlapping, weighted by how often each pretoken occurs; "
                   "on a tie take the greatest (vocab[a], vocab[b]) as bytes")


# -- pretokenize (1 point) -----------------------------------------------------------------------

@suite.check("test_pretokenize", "matches GPT-2's pattern on Unicode text (contractions, digits, "
             "punctuation, whitespace runs, CJK, emoji)", cases=unicode_text, max_examples=80)
def _(student, ref, case):
    expect_equal(student.call("pretokenize", case.text), ref.pretokenize(case.text), "the pretokens")


# -- get_pair_counts (1 point) -------------------------------------------------------------------

@suite.check("test_get_pair_counts", "counts every adjacent pair, overlapping ones included",
             cases=small_ids.map(Ids), max_examples=60)
def _(student, ref, case):
    expect_equal(student.call("get_pair_counts", case.ids), ref.get_pair_counts(case.ids), "the pair counts")


@suite.check("test_get_pair_counts", "does not modify ids", cases=small_ids.map(Ids), max_examples=10)
def _(student, ref, case):
    _, after, _ = student.call_with_inputs("get_pair_counts", list(case.ids))
    _expect_list_unchanged(case.ids, after[0], "ids")


# -- merge_pair (2 points) -----------------------------------------------------------------------

@suite.check("test_merge_pair", "replaces the pair left to right, without overlaps",
             cases=merge_cases(), max_examples=80)
def _(student, ref, case):
    got = student.call("merge_pair", case.ids, case.pair, case.new_id)
    expect_equal(got, ref.merge_pair(case.ids, case.pair, case.new_id), "the merged ids")


@suite.check("test_merge_pair", "does not modify ids", cases=merge_cases(), max_examples=15)
def _(student, ref, case):
    _, after, _ = student.call_with_inputs("merge_pair", list(case.ids), case.pair, case.new_id)
    _expect_list_unchanged(case.ids, after[0], "ids")


# -- train_bpe (3 points) ------------------------------------------------------------------------

@suite.check("test_train_bpe", "no text, one character, or vocab_size 256: no merges (stops early)")
def _(student, ref):
    for text, size in (("", 300), ("a", 300), ("hello world", 256), ("aaaa", 300)):
        _expect_training(student.call("train_bpe", text, size), ref.train_bpe(text, size), text, ref)


@suite.check("test_train_bpe", "same merges and vocabulary as the reference on small corpora over two or "
             "three letters (many ties, overlapping pairs like 'aaa')", cases=small_corpora, max_examples=60)
def _(student, ref, case):
    got = student.call("train_bpe", case.text, case.vocab_size)
    _expect_training(got, ref.train_bpe(case.text, case.vocab_size), case.text, ref)


@suite.check("test_train_bpe", "same merges and vocabulary as the reference on text with words, "
             "punctuation and several scripts", cases=word_corpora, max_examples=25)
def _(student, ref, case):
    got = student.call("train_bpe", case.text, case.vocab_size)
    _expect_training(got, ref.train_bpe(case.text, case.vocab_size), case.text, ref)


TIMING_MERGES, TIMING_LIMIT_S = 80, 2.0


@suite.check("test_train_bpe", f"fast enough: {TIMING_MERGES} merges on a text of 40,000 words "
             f"(400 distinct) within {TIMING_LIMIT_S:g} s")
def _(student, ref):
    # Measured in the sandbox: a version that recounts the pairs of the distinct pretokens at every
    # merge takes 0.2-0.4 s, the reference 0.07-0.2 s, one that recounts every occurrence of every
    # pretoken about 14 s.
    text = _timing_text()
    size = 256 + TIMING_MERGES
    got = student.call_within(TIMING_LIMIT_S, "train_bpe", text, size)
    _expect_training(got, ref.train_bpe(text, size), text, ref)


# -- encode (2 points) ---------------------------------------------------------------------------

@suite.check("test_encode", "same ids as the reference on Unicode text, with merges learned on a "
             "mixed English, Chinese and emoji text", cases=unicode_text, max_examples=60)
def _(student, ref, case):
    _, merges = _ref_tokenizer(ref)
    expect_equal(student.call("encode", case.text, merges), ref.encode(case.text, merges), "the token ids")


@suite.check("test_encode", "same ids as the reference with merges learned on small corpora "
             "(overlapping pairs, merges of merges)", cases=encode_cases(), max_examples=40)
def _(student, ref, case):
    _, merges = ref.train_bpe(case.corpus.text, case.corpus.vocab_size)
    expect_equal(student.call("encode", case.text, merges), ref.encode(case.text, merges), "the token ids")


@suite.check("test_encode", "does not modify merges")
def _(student, ref):
    _, merges = _ref_tokenizer(ref)
    _, after, _ = student.call_with_inputs("encode", REF_TEXT[:200], list(merges))
    expect(isinstance(after[1], list), "your function replaced its input `merges`")
    _expect_list_unchanged([list(m) for m in merges], [list(m) for m in after[1]], "merges")


# -- decode (1 point) ----------------------------------------------------------------------------

@suite.check("test_decode", "decode(encode(s)) == s for any Unicode text (CJK, emoji, combining marks, "
             "whitespace runs)", cases=unicode_text, max_examples=60)
def _(student, ref, case):
    vocab, merges = _ref_tokenizer(ref)
    got = student.call("decode", ref.encode(case.text, merges), vocab)
    expect_equal(got, case.text, "the decoded text")


@st.composite
def invalid_ids(draw: st.DrawFn) -> Ids:
    token = st.one_of(st.integers(0x80, 0xFF), st.integers(0, 0x7F), st.integers(256, REF_VOCAB_SIZE - 1))
    ids = draw(st.lists(token, min_size=1, max_size=12))
    return Ids(ids)


@suite.check("test_decode", "bytes that are not valid UTF-8 become U+FFFD (errors='replace')",
             cases=invalid_ids(), max_examples=40)
def _(student, ref, case):
    vocab, _ = _ref_tokenizer(ref)
    got = student.call("decode", case.ids, vocab)
    expect_equal(got, ref.decode(case.ids, vocab), "the decoded text")


@suite.check("test_decode", "does not modify ids or vocab")
def _(student, ref):
    vocab, merges = _ref_tokenizer(ref)
    ids = ref.encode("中文 and café 😀", merges)
    _, after, _ = student.call_with_inputs("decode", list(ids), dict(vocab))
    _expect_list_unchanged(ids, after[0], "ids")
    expect(after[1] == vocab, "your function changed its input `vocab`; graded functions must not "
                              "modify their inputs")
