"""Score models: networks predicting eps, x0, v, score or velocity."""

from genflow.model.base import MODELS, ScoreModel
from genflow.model.dit import DiT
from genflow.model.energy import EnergyScoreModel, MLPEnergy, MLPEnergyScoreModel
from genflow.model.flops import BlockFlops, count_flops
from genflow.model.mlp import MLPScoreNet
from genflow.model.ncsn import ConvEnergy, ConvEnergyScoreModel, ConvTrunk, NoiseConditionalScoreNet
from genflow.model.uvit import UViT

__all__ = [
    "MODELS",
    "ScoreModel",
    "DiT",
    "UViT",
    "MLPScoreNet",
    "EnergyScoreModel",
    "MLPEnergy",
    "MLPEnergyScoreModel",
    "ConvTrunk",
    "NoiseConditionalScoreNet",
    "ConvEnergy",
    "ConvEnergyScoreModel",
    "BlockFlops",
    "count_flops",
]
