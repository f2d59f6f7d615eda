"""Classifiers on timm, deep ensembles, and the digits uncertainty protocol."""

from genflow.classify.base import CLASSIFIERS, Classifier
from genflow.classify.resnet import CifarResNet

__all__ = ["CLASSIFIERS", "Classifier", "CifarResNet"]
