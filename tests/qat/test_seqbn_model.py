"""The committed seqbn_fmnist model: the Conv -> ReLU -> BN order with wide Dense layers, and its card."""

import numpy as np
import pytest

from sample_models import QUANT_MODELS, SAMPLE_MODELS, card_path, load_card, sample_model_path


@pytest.mark.slow  # 10,000 test images through a 3.8M-parameter model: 20-45 s on the shared VM
def test_seqbn_model_matches_its_card():
    from device_bench.datasets import load_fashion_mnist
    from edge_lowrank.modelio import load_keras_model
    from edge_lowrank.profile import profile_model

    assert "seqbn_fmnist" in QUANT_MODELS and "seqbn_fmnist" not in SAMPLE_MODELS
    assert sample_model_path("seqbn_fmnist").is_file() and card_path("seqbn_fmnist").is_file()
    model, card = load_keras_model(sample_model_path("seqbn_fmnist")), load_card("seqbn_fmnist")
    assert type(model).__name__ == "Sequential"
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds[:3] == ["Conv2D", "BatchNormalization", "MaxPooling2D"]
    assert model.layers[0].get_config()["activation"] == "relu"  # the ReLU comes before BN
    assert [layer.units for layer in model.layers if type(layer).__name__ == "Dense"] == [1024, 512, 10]
    assert model.count_params() == card["params"] and profile_model(model).macs == card["macs"]
    assert "sample_models.train seqbn_fmnist" in card["command"] and card["test_images"] == 10000

    test = load_fashion_mnist("test")
    accuracy = float(np.mean(np.argmax(model.predict(test.x, batch_size=500, verbose=0), -1) == test.y))
    assert abs(accuracy - card["test_accuracy"]) <= 0.002
