"""Pretrain the course's tiny byte-level GPT-2 on the course corpus and save it (lesson 05).

    .venv/bin/python source_data/train_checkpoint.py              # rebuild the shipped checkpoint
    .venv/bin/python source_data/train_checkpoint.py --steps 200 --out /tmp/try   # a quick run

The shipped checkpoint, `source_data/checkpoints/tiny-gpt2-bytes/`, is what the first command
writes: `config.json` and `model.safetensors` (transformers' `save_pretrained`), `train_log.json`
(the loss curves) and `README.md` (seed, configuration, data, time, validation loss, samples).

The training loop uses the lesson's own `AdamW`, `cosine_lr`, `clip_grad_norm` and `train_step`.
This script takes the reference versions from the solution notebook
(`solutions/05/pretraining.ipynb`, loaded with `course.loader`); the lesson's notebook imports this
file and hands `train` its own versions instead, so a student's optimizer trains the same model.

Tokenizer: bytes. Lesson 01 builds a byte-level BPE, but this model reads raw UTF-8 bytes (ids
0-255, no merges, no special tokens): the "byte-level fallback" every byte-level BPE starts from.
Losses are therefore in nats per byte. Data: the English part of the course corpus
(`course.data.corpus_text(split, lang="en")`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CHECKPOINT = HERE / "checkpoints" / "tiny-gpt2-bytes"
NOTEBOOK = REPO / "solutions" / "05" / "pretraining.ipynb"
LANG = "en"

# The shipped model: GPT-2's architecture at about 0.8 M parameters, bytes as tokens, no dropout.
MODEL = dict(vocab_size=256, n_positions=128, n_embd=128, n_layer=4, n_head=4,
             resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None, eos_token_id=None)


@dataclass
class TrainConfig:
    """Everything that decides a run, besides the model and the data."""

    steps: int = 1600
    batch_size: int = 16  # sequences per optimizer step
    seq_len: int = 128  # bytes per sequence (at most the model's n_positions)
    accumulation_steps: int = 1  # micro-batches per step (train_step splits the batch)
    max_lr: float = 6e-3
    min_lr: float = 6e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1  # on matrices and embeddings only, not on biases and LayerNorm gains
    betas: tuple[float, float] = (0.9, 0.95)
    max_norm: float = 1.0  # global gradient-norm clipping
    eval_every: int = 100
    eval_windows: int = 64  # validation windows per evaluation during training (0: all)
    seed: int = 0
    model: dict[str, Any] = field(default_factory=lambda: dict(MODEL))


# -- data ------------------------------------------------------------------------------------------

def encode(text: str) -> Tensor:
    """UTF-8 bytes of `text` as token ids, a (len,) long tensor with values 0-255."""
    return torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).long()


def decode(ids: Tensor | list[int]) -> str:
    """Token ids (bytes) back to text; a cut multi-byte character becomes U+FFFD."""
    return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


def corpus(split: str) -> Tensor:
    """The English course corpus of one split ("train" or "validation") as byte ids."""
    from course.data import corpus_text

    return encode(corpus_text(split, lang=LANG))


def random_batch(data: Tensor, batch_size: int, seq_len: int,
                 generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """`batch_size` random windows of `data`: inputs (batch, seq) and targets shifted by one."""
    starts = torch.randint(0, len(data) - seq_len, (batch_size,), generator=generator)
    windows = data[starts[:, None] + torch.arange(seq_len + 1)]  # (batch, seq + 1)
    return windows[:, :-1], windows[:, 1:]


def eval_windows(data: Tensor, seq_len: int, n: int = 0) -> tuple[Tensor, Tensor]:
    """Non-overlapping windows covering `data` (every byte after the first is a target once).

    n > 0 keeps n windows evenly spread over the split (a cheaper estimate); n = 0 keeps all.
    """
    count = (len(data) - 1) // seq_len
    starts = torch.arange(count) * seq_len
    if 0 < n < count:
        starts = starts[torch.linspace(0, count - 1, n).round().long()]
    windows = data[starts[:, None] + torch.arange(seq_len + 1)]
    return windows[:, :-1], windows[:, 1:]


# -- model -----------------------------------------------------------------------------------------

class LogitsOnly(nn.Module):
    """A transformers causal LM called as `model(ids) -> logits (batch, seq, vocab)`, as train_step wants."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, ids: Tensor) -> Tensor:
        return self.lm(input_ids=ids).logits


def build_model(seed: int, **config: Any) -> LogitsOnly:
    """A freshly initialised GPT-2 (transformers' GPT2LMHeadModel) wrapped in LogitsOnly."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return LogitsOnly(GPT2LMHeadModel(GPT2Config(**{**MODEL, **config})))


def load_checkpoint(path: Path = CHECKPOINT) -> LogitsOnly:
    """The shipped (or any saved) checkpoint, offline, in eval mode."""
    from transformers import GPT2LMHeadModel

    return LogitsOnly(GPT2LMHeadModel.from_pretrained(path)).eval()


def n_params(model: nn.Module, embeddings: bool = True) -> int:
    """Parameter count (shared tensors once); embeddings=False leaves out token and position tables."""
    return sum(p.numel() for name, p in model.named_parameters()
               if embeddings or not name.endswith(("wte.weight", "wpe.weight")))


@torch.no_grad()
def evaluate(model: nn.Module, data: Tensor, seq_len: int, n_windows: int = 0, batch_size: int = 64) -> float:
    """Mean next-byte cross-entropy (nats per byte) over the windows of eval_windows(data, seq_len, n)."""
    was_training = model.training
    model.eval()
    inputs, targets = eval_windows(data, seq_len, n_windows)
    total = 0.0
    for x, y in zip(inputs.split(batch_size), targets.split(batch_size)):
        logits = model(x)
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
    model.train(was_training)
    return total / targets.numel()


@torch.no_grad()
def generate(model: nn.Module, prompt: str, n_bytes: int, temperature: float = 0.0, seed: int = 0) -> str:
    """Continue `prompt` by `n_bytes` bytes: greedy (temperature 0) or sampled with a seeded generator."""
    was_training = model.training
    model.eval()
    ids = encode(prompt)[None]  # (1, len)
    context = model.lm.config.n_positions if isinstance(model, LogitsOnly) else MODEL["n_positions"]
    generator = torch.Generator().manual_seed(seed)
    for _ in range(n_bytes):
        logits = model(ids[:, -context:])[0, -1].double()  # (vocab,)
        if temperature == 0:
            nxt = logits.argmax()[None]
        else:
            nxt = torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=generator)
        ids = torch.cat([ids, nxt[None]], dim=1)
    model.train(was_training)
    return decode(ids[0, len(encode(prompt)):])


# -- training --------------------------------------------------------------------------------------

def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices and embeddings (2-D tensors); none on biases and LayerNorm gains."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train(cfg: TrainConfig, train_data: Tensor, val_data: Tensor, *, AdamW: type, cosine_lr: Callable,
          clip_grad_norm: Callable, train_step: Callable, log: Callable[[str], None] | None = print
          ) -> tuple[LogitsOnly, dict[str, Any]]:
    """Train a fresh model for cfg.steps optimizer steps; returns (model, history).

    The four lesson functions are arguments, so the notebook can pass a student's versions.
    Each step: set every group's lr to cosine_lr(step, ...); train_step on a random batch;
    clip_grad_norm runs just before each optimizer step (a step pre-hook). history holds the
    per-step train loss, lr and gradient norm, the validation losses every cfg.eval_every steps,
    and the wall-clock seconds (training and evaluation).
    """
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.seed, **cfg.model)
    model.train()
    params = list(model.parameters())
    optimizer = AdamW(param_groups(model, cfg.weight_decay), lr=cfg.max_lr, betas=cfg.betas)
    history: dict[str, Any] = {"step": [], "train_loss": [], "lr": [], "grad_norm": [],
                               "val_step": [], "val_loss": [], "eval_seconds": 0.0}

    def clip(opt: Any, args: Any, kwargs: Any) -> None:  # optimizer step pre-hook
        history["grad_norm"].append(float(clip_grad_norm(params, cfg.max_norm)))

    optimizer.register_step_pre_hook(clip)
    generator = torch.Generator().manual_seed(cfg.seed)
    start = time.perf_counter()
    for step in range(cfg.steps):
        lr = cosine_lr(step, cfg.max_lr, cfg.min_lr, cfg.warmup_steps, cfg.steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = random_batch(train_data, cfg.batch_size, cfg.seq_len, generator)
        loss = train_step(model, batch, optimizer, cfg.accumulation_steps)
        history["step"].append(step + 1)
        history["train_loss"].append(float(loss))
        history["lr"].append(lr)
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            t0 = time.perf_counter()
            val = evaluate(model, val_data, cfg.seq_len, cfg.eval_windows)
            history["eval_seconds"] += time.perf_counter() - t0
            history["val_step"].append(step + 1)
            history["val_loss"].append(val)
            if log:
                recent = history["train_loss"][-cfg.eval_every:]
                log(f"step {step + 1:5d}/{cfg.steps}  train {sum(recent) / len(recent):.3f}  "
                    f"val {val:.3f}  lr {lr:.2e}  |g| {history['grad_norm'][-1]:.2f}  "
                    f"{time.perf_counter() - start:5.0f} s")
    history["seconds"] = time.perf_counter() - start
    return model, history


def reference_functions() -> dict[str, Callable]:
    """AdamW, cosine_lr, clip_grad_norm and train_step of the lesson's solution notebook."""
    sys.path.insert(0, str(REPO))
    from course.loader import load_notebook

    module = load_notebook(NOTEBOOK, module_name="reference_05").module
    return {name: getattr(module, name) for name in ("AdamW", "cosine_lr", "clip_grad_norm", "train_step")}


# -- data parallelism demo (lesson 05, section 8) --------------------------------------------------

DDP_MODEL = dict(n_positions=32, n_embd=32, n_layer=2, n_head=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, inputs: Tensor, targets: Tensor, out: str) -> None:
    """One DDP process: its shard of the global batch, forward, backward; rank 0 saves the gradients."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        model = DDP(build_model(0, **DDP_MODEL))  # DDP broadcasts rank 0's weights at construction
        shard = slice(rank * len(inputs) // world_size, (rank + 1) * len(inputs) // world_size)
        logits = model(inputs[shard])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets[shard].reshape(-1))
        loss.backward()  # DDP all-reduces (averages) the gradients across processes during backward
        if rank == 0:
            torch.save({n: p.grad for n, p in model.module.named_parameters()}, out)
    finally:
        dist.destroy_process_group()


def ddp_demo(global_batch: int = 8, world_size: int = 2, seed: int = 0) -> dict[str, Any]:
    """Gradients of DDP over `world_size` CPU processes (gloo) vs one process on the same global batch.

    Returns {"max_abs_diff", "max_grad", "seconds", "n_tensors"}: the largest difference between
    the DDP gradient (rank 0, after DDP's all-reduce) and the single-process gradient.
    """
    import torch.multiprocessing as mp

    if str(HERE) not in sys.path:  # the spawned processes import this file by its module name
        sys.path.insert(0, str(HERE))
    generator = torch.Generator().manual_seed(seed)
    data = torch.randint(0, 256, (global_batch, DDP_MODEL["n_positions"] + 1), generator=generator)
    inputs, targets = data[:, :-1], data[:, 1:]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "grads.pt")
        mp.spawn(_ddp_worker, args=(world_size, _free_port(), inputs, targets, out), nprocs=world_size)
        ddp_grads = torch.load(out)
    seconds = time.perf_counter() - start
    model = build_model(0, **DDP_MODEL)
    logits = model(inputs)
    F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).backward()
    single = dict(model.named_parameters())
    diffs = [(ddp_grads[n] - single[n].grad).abs().max().item() for n in ddp_grads]
    return {"max_abs_diff": max(diffs), "max_grad": max(p.grad.abs().max().item() for p in single.values()),
            "seconds": seconds, "n_tensors": len(diffs)}


# -- the shipped checkpoint ------------------------------------------------------------------------

PROMPTS = ["It is a truth universally acknowledged, that", "Call me Ishmael. Some years ago,"]
SAMPLE_BYTES = 120
LOSS_TARGET = 1.60  # nats per byte on the English validation split; the README states it


def save(model: LogitsOnly, cfg: TrainConfig, history: dict[str, Any], val_loss: float, out: Path,
         command: str) -> None:
    """Write config.json, model.safetensors, train_log.json and README.md to `out`."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    out.mkdir(parents=True, exist_ok=True)
    model.lm.save_pretrained(out)
    (out / "train_log.json").write_text(json.dumps({"config": asdict(cfg), **history}) + "\n")
    samples = [(p, generate(model, p, SAMPLE_BYTES)) for p in PROMPTS]
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file()) / 2**20
    (out / "README.md").write_text(README.format(
        command=command, seed=cfg.seed, model=json.dumps({k: v for k, v in cfg.model.items()}),
        n_params=n_params(model), n_nonembedding=n_params(model, embeddings=False),
        cfg=json.dumps({k: v for k, v in asdict(cfg).items() if k != "model"}),
        tokens=cfg.steps * cfg.batch_size * cfg.seq_len, train_bytes=len(corpus("train")),
        val_bytes=len(corpus("validation")), seconds=history["seconds"],
        eval_seconds=history["eval_seconds"], val_loss=val_loss, bpb=val_loss / math.log(2),
        target=LOSS_TARGET, torch=torch.__version__, cpu=_cpu_name(),
        threads=torch.get_num_threads(), size=size, n_bytes=SAMPLE_BYTES,
        samples="\n".join(f"    {p!r} -> {s!r}" for p, s in samples)))


def _cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


README = """# tiny-gpt2-bytes: the course's pretrained byte-level GPT-2 (lesson 05)

A GPT-2 (transformers `GPT2LMHeadModel`) with {n_params:,} parameters ({n_nonembedding:,} outside
the token and position embeddings), pretrained from scratch on the English part of the course
corpus. Later lessons load it offline:

    from transformers import GPT2LMHeadModel
    model = GPT2LMHeadModel.from_pretrained("source_data/checkpoints/tiny-gpt2-bytes")

- **Tokenizer: raw UTF-8 bytes** (token id = byte value, vocabulary 256, no merges, no special
  tokens; `list(text.encode("utf-8"))` encodes and `bytes(ids).decode("utf-8", errors="replace")`
  decodes). This is the byte-level fallback of a byte-level BPE, not lesson 01's merges.
  The config's `bos_token_id` and `eos_token_id` are null. Context: 128 bytes.
- **Data:** `course.data.corpus_text(split, lang="en")`: Moby-Dick, Pride and Prejudice and Botchan
  (see `source_data/README.md` for origins and licences); {train_bytes:,} training bytes and
  {val_bytes:,} validation bytes (every tenth paragraph of each book is held out).
- **Model config:** `{model}`
- **Training config:** `{cfg}` — the lesson's AdamW (decoupled weight decay on 2-D tensors only),
  linear warmup then cosine decay (`cosine_lr`), global gradient clipping (`clip_grad_norm`),
  `train_step`; {tokens:,} training tokens (bytes) in all.
- **Seed:** {seed}. **Command that rebuilds it:** `{command}`
- **Training time:** {seconds:.0f} s wall clock (of which {eval_seconds:.0f} s of periodic evaluation) on
  {threads} CPU threads ({cpu}), torch {torch}.
- **Validation loss:** {val_loss:.4f} nats per byte ({bpb:.3f} bits per byte) over the whole English
  validation split, in non-overlapping 128-byte windows (`evaluate(model, corpus("validation"), 128)`
  in `source_data/train_checkpoint.py`). Target: at most {target:.2f} nats per byte within 5 minutes
  on 2 CPU cores. `tests/test_checkpoint.py` recomputes it.
- **Greedy samples** (`generate(model, prompt, {n_bytes})`; `tests/test_checkpoint.py` checks them):

{samples}

- **Files:** `config.json`, `model.safetensors` (float32), `generation_config.json`, `train_log.json`
  (per-step train loss, learning rate, gradient norm; validation loss every 100 steps on 64
  windows), this README. {size:.1f} MiB in all.
- **Licence:** the weights are released under the course's MIT licence; the training texts are in
  the public domain (see `source_data/README.md`).
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--out", type=Path, default=CHECKPOINT)
    args = parser.parse_args(argv)
    cfg = TrainConfig(steps=args.steps, seed=args.seed)
    train_data, val_data = corpus("train"), corpus("validation")
    print(f"{len(train_data):,} training bytes, {len(val_data):,} validation bytes, "
          f"{torch.get_num_threads()} threads")
    model, history = train(cfg, train_data, val_data, **reference_functions())
    val_loss = evaluate(model, val_data, cfg.seq_len)
    print(f"trained in {history['seconds']:.0f} s; validation loss {val_loss:.4f} nats per byte "
          f"(target {LOSS_TARGET})")
    command = "python source_data/train_checkpoint.py" + "".join(
        f" --{k} {v}" for k, v in (("steps", args.steps), ("seed", args.seed))
        if v != getattr(TrainConfig, k))
    if args.out != CHECKPOINT:
        command += f" --out {args.out}"
    save(model, cfg, history, val_loss, args.out, command)
    print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
