"""Hypothesis strategies shared by every lesson's hidden tests.

Tensors are built from a drawn integer seed with a `torch.Generator`: fast,
reproducible, and a failing example is reported as short numbers (shapes and
a seed), not as a wall of floats.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from hypothesis import strategies as st

FLOAT_DTYPES = (torch.float32, torch.float64)

seeds = st.integers(min_value=0, max_value=2**31 - 1)
float_dtypes = st.sampled_from(FLOAT_DTYPES)


def batch_shapes(max_dims: int = 2, max_side: int = 3) -> st.SearchStrategy[tuple[int, ...]]:
    """Leading batch dimensions `(...)`, possibly none."""
    return st.lists(st.integers(1, max_side), max_size=max_dims).map(tuple)


def randn(shape: Sequence[int], seed: int, dtype: torch.dtype = torch.float32,
          scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(tuple(shape), generator=g, dtype=torch.float64) * scale).to(dtype)


def rand_bool(shape: Sequence[int], seed: int, p: float = 0.7) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(tuple(shape), generator=g) < p


def describe(t: torch.Tensor) -> str:
    """`(2, 3, 4) float32`: how an input is named in feedback."""
    return f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}"
