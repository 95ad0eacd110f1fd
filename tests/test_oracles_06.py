"""The reference solutions of lesson 06 (decoding) against independent oracles.

Oracles: transformers' `TemperatureLogitsWarper`, `TopKLogitsWarper`, `TopPLogitsWarper` and
`RepetitionPenaltyLogitsProcessor`; `numpy.argmax` for greedy choices; `torch.multinomial` with a
seeded generator for sampling; transformers' `GPT2LMHeadModel.generate` (greedy, sampled with
temperature/top-k/top-p, and beam search) on a tiny GPT-2 built offline from a config; and a
brute-force enumeration of every continuation for beam search.

One documented difference: with ties, `TopPLogitsWarper` keeps the tokens of a tie group in the order
its sort happens to produce, while our `top_p_filter` keeps every token tied with a kept token (as
`TopKLogitsWarper` does for top-k). So on tied logits ours keeps a superset, and every extra token is
tied with the smallest logit transformers keeps; without ties the two agree exactly. Inputs are kept
away from the top-p boundaries where float rounding decides (transformers compares a cumulative sum
in increasing order with 1 - p, we compare the mass before a token with p), except for dyadic
probabilities, where both are exact.
"""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autograder.strategies import randn, seeds
from course.loader import load_notebook

NOTEBOOK = Path(__file__).resolve().parents[1] / "solutions/06/decoding.ipynb"
ORACLE = settings(derandomize=True, database=None, deadline=None, max_examples=60)
NEG_INF = float("-inf")


@pytest.fixture(scope="module")
def ref():
    return load_notebook(NOTEBOOK, module_name="reference_06_oracles").module


pytestmark = pytest.mark.usefixtures("one_thread")


@st.composite
def logits(draw, ties: bool = False, max_vocab: int = 16):
    """(batch, vocab) logits: random, or small integers (ties), sometimes with -inf or huge entries."""
    batch, vocab = draw(st.integers(1, 4)), draw(st.integers(1, max_vocab))
    dtype, seed = draw(st.sampled_from([torch.float32, torch.float64])), draw(seeds)
    g = torch.Generator().manual_seed(seed)
    if ties:
        z = torch.randint(-2, 3, (batch, vocab), generator=g).to(dtype)
    else:
        z = randn((batch, vocab), seed, dtype, scale=draw(st.sampled_from([0.5, 2.0, 30.0])))
    if draw(st.booleans()):  # some tokens already removed, the row maximum kept
        drop = torch.rand(z.shape, generator=g) < 0.3
        drop[torch.arange(batch), z.argmax(dim=-1)] = False
        z = z.masked_fill(drop, NEG_INF)
    return z


def away_from_boundaries(z: torch.Tensor, p: float, margin: float = 1e-4) -> float:
    """p moved off the masses before every group of equal logits, where rounding decides."""
    probs = torch.softmax(z.double(), dim=-1)
    masses = torch.where(z[..., None, :] > z[..., :, None], probs[..., None, :], 0.0).sum(-1).flatten()
    while bool(((masses - p).abs() < margin).any()):
        p += 3 * margin if p < 0.5 else -3 * margin
    return p


# -- greedy_next ---------------------------------------------------------------------------------

@ORACLE
@given(st.one_of(logits(), logits(ties=True)))
def test_greedy_next_is_numpy_argmax(ref, z):
    got = ref.greedy_next(z)
    assert got.dtype == torch.int64 and got.shape == (z.shape[0],)
    assert got.tolist() == np.argmax(z.numpy(), axis=-1).tolist()  # numpy: the first maximum


# -- apply_temperature ---------------------------------------------------------------------------

@ORACLE
@given(logits(), st.floats(0.05, 20.0))
def test_temperature_matches_transformers(ref, z, t):
    from transformers import TemperatureLogitsWarper

    want = TemperatureLogitsWarper(t)(None, z.clone())
    assert torch.equal(ref.apply_temperature(z, t), want)


# -- top_k_filter --------------------------------------------------------------------------------

@ORACLE
@given(st.one_of(logits(), logits(ties=True)), st.integers(1, 20))
def test_top_k_matches_transformers(ref, z, k):
    from transformers import TopKLogitsWarper

    before = z.clone()
    want = TopKLogitsWarper(k)(None, z.clone())
    assert torch.equal(ref.top_k_filter(z, k), want)
    assert torch.equal(z, before)


# -- top_p_filter --------------------------------------------------------------------------------

def _hf_top_p(z: torch.Tensor, p: float) -> torch.Tensor:
    from transformers import TopPLogitsWarper

    return TopPLogitsWarper(p)(None, z.clone())


@ORACLE
@given(logits(), st.floats(0.02, 0.98))
def test_top_p_matches_transformers_without_ties(ref, z, p):
    p = away_from_boundaries(z, p)
    assert torch.equal(ref.top_p_filter(z, p), _hf_top_p(z, p))


@ORACLE
@given(logits(ties=True), st.floats(0.02, 0.98))
def test_top_p_with_ties_keeps_what_transformers_keeps_plus_its_ties(ref, z, p):
    p = away_from_boundaries(z, p)
    ours, theirs = ref.top_p_filter(z, p), _hf_top_p(z, p)
    kept_ours, kept_theirs = ours > NEG_INF, theirs > NEG_INF
    assert bool((kept_ours | ~kept_theirs).all()), "ours must keep every token transformers keeps"
    smallest_kept = theirs.masked_fill(~kept_theirs, float("inf")).amin(dim=-1, keepdim=True)
    extra = kept_ours & ~kept_theirs
    assert bool((z[extra] == smallest_kept.expand_as(z)[extra]).all()), "extras must tie the last kept"
    assert torch.equal(ours[kept_ours], z[kept_ours])


@ORACLE
@given(st.one_of(logits(ties=True), logits()), st.floats(0.02, 0.98))
def test_top_p_is_the_closed_form_rule(ref, z, p):
    # keep token v when the mass of the tokens strictly more likely than v is below p (a tie group shares
    # the mass before its first member), written as a double loop over the vocabulary
    p = away_from_boundaries(z, p)
    probs = torch.softmax(z.double(), dim=-1)
    want = z.clone()
    for b, v in itertools.product(range(z.shape[0]), range(z.shape[1])):
        above = sum(probs[b, u].item() for u in range(z.shape[1]) if z[b, u] > z[b, v])
        if above >= p:
            want[b, v] = NEG_INF
    assert torch.equal(ref.top_p_filter(z, p), want)


@pytest.mark.parametrize(("dtype", "p", "n_kept"), [
    (torch.float32, 0.5, 1), (torch.float32, 0.6, 2), (torch.float32, 0.75, 2), (torch.float32, 0.8, 3),
    (torch.float32, 0.875, 3), (torch.float64, 0.5, 1), (torch.float64, 0.6, 2), (torch.float64, 0.75, 2)])
def test_top_p_exact_boundaries_match_transformers(ref, dtype, p, n_kept):
    # probabilities 1/2, 1/4, 1/8, 1/16, 1/16 (float32) or 1/2, 1/4, 1/8, 1/8 (float64), shuffled: the
    # masses compared with p are exact (in float64, log(2) * 3 is not, and 1/16 comes out a hair above)
    levels = [[2, 0, 3, 1, 3], [0, 1, 2, 3, 3]] if dtype == torch.float32 else [[2, 0, 1, 2], [0, 1, 2, 2]]
    z = (-torch.tensor(levels, dtype=torch.float64) * math.log(2)).to(dtype)
    assert torch.softmax(z, dim=-1).sort(dim=-1, descending=True).values[0, :3].tolist() == [0.5, 0.25, 0.125]
    got = ref.top_p_filter(z, p)
    assert torch.equal(got, _hf_top_p(z, p))
    assert ((got > NEG_INF).sum(dim=-1) == n_kept).all()


@ORACLE
@given(logits())
def test_top_p_one_keeps_everything(ref, z):
    assert torch.equal(ref.top_p_filter(z, 1.0), z)
    finite = z.masked_fill(z == NEG_INF, 0.0) / 30  # no probability underflows to 0: transformers keeps all
    assert torch.equal(_hf_top_p(finite, 1.0), finite)


# -- repetition_penalty --------------------------------------------------------------------------

@ORACLE
@given(logits(), st.integers(1, 10), seeds, st.sampled_from([0.5, 0.9, 1.2, 1.5, 2.0, 3.0]))
def test_repetition_penalty_matches_transformers(ref, z, seq, seed, penalty):
    from transformers import RepetitionPenaltyLogitsProcessor

    prev = torch.randint(0, z.shape[-1], (z.shape[0], seq), generator=torch.Generator().manual_seed(seed))
    before = z.clone()
    want = RepetitionPenaltyLogitsProcessor(penalty)(prev, z.clone())
    assert torch.equal(ref.repetition_penalty(z, prev, penalty), want)
    assert torch.equal(z, before)


# -- sample_next ---------------------------------------------------------------------------------

@ORACLE
@given(logits(max_vocab=8), seeds)
def test_sample_next_is_one_seeded_multinomial_draw(ref, z, seed):
    g1, g2 = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    for _ in range(3):  # successive calls advance the same generator
        want = torch.multinomial(torch.softmax(z, dim=-1), 1, generator=g2).squeeze(-1)
        got = ref.sample_next(z, g1)
        assert got.dtype == torch.int64 and torch.equal(got, want)
        assert bool((z.gather(-1, got[:, None]) > NEG_INF).all()), "a removed token was drawn"


def test_sample_next_frequencies(ref):
    z = torch.tensor([[1.0, 0.0, -1.0, 2.0, NEG_INF]])
    draws = ref.sample_next(z.repeat(40_000, 1), torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=5).double() / len(draws)
    p = torch.softmax(z[0].double(), dim=-1)
    assert ((freq - p).abs() <= 6 * (p * (1 - p) / len(draws)).sqrt() + 1e-4).all()


# -- generate and beam_search on a tiny GPT-2 ----------------------------------------------------

@pytest.fixture(scope="module")
def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=11, n_positions=32, n_embd=16, n_layer=2, n_head=2, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None, eos_token_id=None, pad_token_id=0)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(4.0)  # sharper next-token distributions than at initialisation
    return model


def _hf_generate(model, ids: torch.Tensor, **kwargs) -> torch.Tensor:
    return model.generate(ids, attention_mask=torch.ones_like(ids), pad_token_id=0, use_cache=False, **kwargs)


@settings(ORACLE, max_examples=10)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 8), seeds)
def test_greedy_generate_matches_transformers(ref, gpt2, batch, seq, new, seed):
    ids = torch.randint(0, 11, (batch, seq), generator=torch.Generator().manual_seed(seed))
    got = ref.generate(lambda x: gpt2(x).logits, ids, new, temperature=0)
    assert torch.equal(got, _hf_generate(gpt2, ids, max_new_tokens=new, do_sample=False))
    assert got.shape == (batch, seq + new)


@settings(ORACLE, max_examples=15)
@given(st.sampled_from([0.6, 1.0, 1.7]), st.sampled_from([None, 1, 3, 6]),
       st.sampled_from([None, 0.5, 0.8, 0.95]), seeds)
def test_sampled_generate_matches_transformers(ref, gpt2, temperature, top_k, top_p, seed):
    # generator=None: both draw from torch's global generator, seeded alike, with one multinomial per step
    ids = torch.randint(0, 11, (4, 3), generator=torch.Generator().manual_seed(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        got = ref.generate(lambda x: gpt2(x).logits, ids, 10, temperature=temperature, top_k=top_k,
                           top_p=top_p)
        torch.manual_seed(seed)
        want = _hf_generate(gpt2, ids, max_new_tokens=10, do_sample=True, temperature=temperature,
                            top_k=top_k or 0, top_p=top_p or 1.0)
    assert torch.equal(got, want)


@settings(ORACLE, max_examples=10)
@given(st.integers(1, 5), st.integers(1, 6), st.integers(1, 3), seeds)
def test_beam_search_matches_transformers(ref, gpt2, num_beams, new, batch, seed):
    ids = torch.randint(0, 11, (batch, 2), generator=torch.Generator().manual_seed(seed))
    got = ref.beam_search(lambda x: gpt2(x).logits, ids, num_beams, new)
    want = _hf_generate(gpt2, ids, max_new_tokens=new, do_sample=False, num_beams=num_beams,
                        length_penalty=0.0, early_stopping=False)
    assert torch.equal(got, want)


@settings(ORACLE, max_examples=20)
@given(st.integers(2, 4), st.integers(1, 3), seeds)
def test_beam_search_with_every_prefix_is_exhaustive(ref, vocab, new, seed):
    table = randn((vocab, vocab, vocab), seed, torch.float64, scale=2.0)

    def model(x):
        return table[torch.cat([x[:, :1], x[:, :-1]], dim=1), x]

    ids = torch.tensor([[0, vocab - 1]])
    best, best_score = None, -math.inf
    for tail in itertools.product(range(vocab), repeat=new):  # brute force over every continuation
        seq = torch.tensor([[0, vocab - 1, *tail]])
        score = torch.log_softmax(model(seq)[0, 1:-1], dim=-1)[torch.arange(new), seq[0, 2:]].sum().item()
        if score > best_score:
            best, best_score = seq, score
    assert torch.equal(ref.beam_search(model, ids, vocab ** (new - 1), new), best)
    assert torch.equal(ref.beam_search(model, ids, 1, new), ref.generate(model, ids, new, temperature=0))
