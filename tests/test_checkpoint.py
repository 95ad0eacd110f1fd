"""The shipped checkpoint of lesson 05 (`source_data/checkpoints/tiny-gpt2-bytes`) is what its README says.

It loads offline with transformers, is small, its validation loss on the English validation split
of the course corpus matches the README's number (recomputed here with F.cross_entropy, not with
the training script's evaluate), its greedy samples are reproducible and equal to the README's,
and the training script still trains.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "source_data" / "train_checkpoint.py"
CHECKPOINT = REPO / "source_data" / "checkpoints" / "tiny-gpt2-bytes"
README = (CHECKPOINT / "README.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def tc():
    """The training script, imported from its path (source_data is not a package)."""
    spec = importlib.util.spec_from_file_location("train_checkpoint", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_checkpoint"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model():
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(CHECKPOINT, local_files_only=True).eval()


def test_checkpoint_files_and_size():
    names = {p.name for p in CHECKPOINT.iterdir()}
    assert {"config.json", "model.safetensors", "README.md", "train_log.json"} <= names
    total = sum(p.stat().st_size for p in CHECKPOINT.iterdir())
    assert total < 10 * 2**20, f"the checkpoint folder is {total / 2**20:.1f} MiB; keep it under 10 MiB"


def test_checkpoint_loads_offline_as_a_byte_level_gpt2(model):
    cfg = model.config
    assert (cfg.vocab_size, cfg.n_positions, cfg.n_embd, cfg.n_layer, cfg.n_head) == (256, 128, 128, 4, 4)
    assert next(model.parameters()).dtype == torch.float32
    n_params = sum(p.numel() for p in model.parameters())
    assert f"{n_params:,} parameters" in README


def test_validation_loss_matches_readme(model):
    from course.data import corpus_text

    stated = float(re.search(r"\*\*Validation loss:\*\* ([0-9.]+) nats per byte", README).group(1))
    data = torch.tensor(list(corpus_text("validation", lang="en").encode("utf-8")))
    seq = model.config.n_positions
    count = (len(data) - 1) // seq  # non-overlapping windows: every byte after the first is a target once
    windows = data[: count * seq + 1].unfold(0, seq + 1, seq)  # (count, seq + 1)
    total = 0.0
    with torch.no_grad():
        for chunk in windows.split(64):
            logits = model(input_ids=chunk[:, :-1]).logits
            targets = chunk[:, 1:].reshape(-1)
            total += F.cross_entropy(logits.reshape(-1, 256), targets, reduction="sum").item()
    loss = total / (count * seq)
    assert abs(loss - stated) < 2e-3, f"validation loss {loss:.4f} nats/byte, README says {stated:.4f}"
    target = float(re.search(r"Target: at most ([0-9.]+) nats per byte", README).group(1))
    assert loss <= target


def test_greedy_samples_are_reproducible_and_match_readme(tc, model):
    wrapped = tc.LogitsOnly(model)
    for prompt in tc.PROMPTS:
        first = tc.generate(wrapped, prompt, tc.SAMPLE_BYTES)
        assert tc.generate(wrapped, prompt, tc.SAMPLE_BYTES) == first
        assert f"{prompt!r} -> {first!r}" in README, f"the README's sample for {prompt!r} differs: {first!r}"


def test_readme_states_time_seed_and_command():
    seconds = float(re.search(r"\*\*Training time:\*\* ([0-9.]+) s", README).group(1))
    assert 0 < seconds <= 300, "the checkpoint must train within 5 minutes"
    assert "**Seed:** 0" in README and "python source_data/train_checkpoint.py" in README
    assert "Licence" in README


def test_training_script_trains_a_tiny_model(tc):
    """Twenty steps of a tiny configuration, with the reference functions, lower the loss."""
    data = tc.encode("the quick brown fox jumps over the lazy dog. " * 40)
    cfg = tc.TrainConfig(steps=20, batch_size=4, seq_len=16, warmup_steps=2, eval_every=10, eval_windows=8,
                         model=dict(tc.MODEL, n_positions=16, n_embd=16, n_layer=1, n_head=2))
    model, history = tc.train(cfg, data, data, **tc.reference_functions(), log=None)
    assert len(history["train_loss"]) == 20 and len(history["grad_norm"]) == 20
    assert history["val_loss"][-1] < math.log(256) - 1.0
    assert history["lr"][0] == 0.0 and math.isclose(history["lr"][2], cfg.max_lr)
