"""FLOP counting: closed forms for a linear layer and attention, on the CPU too."""

from __future__ import annotations

import torch
from torch import nn

from genflow.model import count_flops
from genflow.model.flops import flop_counter


class _Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(5, 7)

    def forward(self, x, t):
        return self.layer(x)


def test_linear_layer_counts_two_m_n_k():
    assert count_flops(_Linear(), torch.randn(3, 5), torch.rand(3)) == 2 * 3 * 5 * 7


def test_attention_counts_four_b_h_l2_d_on_the_cpu():
    b, h, length, d = 2, 3, 10, 8
    q = torch.randn(b, h, length, d)
    with flop_counter() as counter:
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
    assert counter.get_total_flops() == 4 * b * h * length**2 * d  # q k^T and (softmax) v
