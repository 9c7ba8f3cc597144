"""Sample models trained on Fashion-MNIST, shipped with edge-lowrank, and their cards.

Pure Python: importing this package does not import TensorFlow or Keras.

>>> from sample_models import SAMPLE_MODELS, sample_model_path, load_card
>>> SAMPLE_MODELS
('resnet_fmnist', 'vgg_fmnist')
>>> sample_model_path("resnet_fmnist").name
'resnet_fmnist.keras'
"""

from __future__ import annotations

import json
from pathlib import Path

SAMPLE_MODELS = ("resnet_fmnist", "vgg_fmnist")
# Models kept for quantization studies (PTQ vs QAT, docs/converters.md), not among the pipeline's samples.
QUANT_MODELS = ("seqbn_fmnist",)
DEFAULT_MODEL = "resnet_fmnist"
_HERE = Path(__file__).resolve().parent


def _check(name: str) -> str:
    known = SAMPLE_MODELS + QUANT_MODELS
    if name not in known:
        raise ValueError(f"Invalid value for argument `name`. Expected one of {known}. "
                         f"Received: name={name!r}.")
    return name


def sample_model_path(name: str = DEFAULT_MODEL) -> Path:
    """Path of the trained `.keras` file of sample model `name`."""
    return _HERE / f"{_check(name)}.keras"


def card_path(name: str = DEFAULT_MODEL) -> Path:
    """Path of the JSON card (accuracy, parameters, MACs, training) of sample model `name`."""
    return _HERE / f"{_check(name)}.json"


def load_card(name: str = DEFAULT_MODEL) -> dict:
    """The card of sample model `name` as a dict (keys: name, description, test_accuracy, params, macs, ...)."""
    return json.loads(card_path(name).read_text(encoding="utf-8"))


__all__ = ["SAMPLE_MODELS", "QUANT_MODELS", "DEFAULT_MODEL", "sample_model_path", "card_path", "load_card"]
