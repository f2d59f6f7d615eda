"""Tiny backbones with signal in every block (adaLN-Zero starts as the identity) for the exit tests."""

from __future__ import annotations

import genflow as gf
from tests.model.builders import perturb_


def tiny_dit(depth: int = 4, seed: int = 0, **kwargs) -> gf.DiT:
    """A 4-block DiT of hidden 32 on 8x8 images, weights perturbed so each block changes the output."""
    return perturb_(gf.DiT(image_size=8, patch_size=4, hidden_size=32, depth=depth, num_heads=2, **kwargs), seed)


def tiny_uvit(seed: int = 0) -> gf.UViT:
    """A U-ViT with 2 exitable out-blocks (depth 5), hidden 32, perturbed."""
    return perturb_(gf.UViT(image_size=8, patch_size=4, hidden_size=32, depth=5, num_heads=2), seed)
