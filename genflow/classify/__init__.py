"""Classifiers on timm (``CLASSIFIERS``), deep ensembles, their training, loading, evaluation and the digits
uncertainty protocol. See ``docs/uncertainty.md``."""

from genflow.classify.base import CLASSIFIERS, Classifier
from genflow.classify.ensemble import COMBINE_RULES, Ensemble, combine_logits
from genflow.classify.evaluate import (
    ClassifierReport,
    evaluate_classifier,
    evaluate_run,
    predict_log_probs,
    prediction_metrics,
)
from genflow.classify.loading import ClassifierCheckpointError, load_classifier, load_ensemble, load_run, member_dirs
from genflow.classify.protocol import (
    PROTOCOL_RECIPE,
    PROTOCOL_SEEDS,
    ProtocolData,
    ProtocolResult,
    digits_protocol,
    protocol_data,
)
from genflow.classify.resnet import CifarResNet
from genflow.classify.timm_models import TimmClassifier
from genflow.classify.training import (
    TrainedMembers,
    build_classifier,
    classification_data,
    stratified_subset,
    train_members,
    train_recipe,
)

__all__ = [
    "CLASSIFIERS",
    "Classifier",
    "CifarResNet",
    "TimmClassifier",
    "Ensemble",
    "COMBINE_RULES",
    "combine_logits",
    "ClassifierCheckpointError",
    "load_classifier",
    "load_ensemble",
    "load_run",
    "member_dirs",
    "TrainedMembers",
    "build_classifier",
    "classification_data",
    "stratified_subset",
    "train_members",
    "train_recipe",
    "PROTOCOL_RECIPE",
    "PROTOCOL_SEEDS",
    "ProtocolData",
    "ProtocolResult",
    "digits_protocol",
    "protocol_data",
    "ClassifierReport",
    "evaluate_classifier",
    "evaluate_run",
    "predict_log_probs",
    "prediction_metrics",
]
