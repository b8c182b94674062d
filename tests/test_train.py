"""Training is deterministic on CPU and validates its inputs."""

import pytest
import torch

from gclab.experiments.data import make_split, to_tensors
from gclab.experiments.models import SmallResNet
from gclab.experiments.train import TrainConfig, accuracy, build, predict, train


def _tiny_run(seed: int):
    x, y = to_tensors(*make_split("longrange", "train", n=48, seed=seed + 10))
    model = build(lambda: SmallResNet(block="gc", widths=(4, 8, 16, 16)), seed=seed)
    hist = train(model, x, y, TrainConfig(epochs=2, batch_size=16, seed=seed, progress=False))
    return model, hist


def test_same_seed_same_weights_different_seed_different_weights():
    m1, h1 = _tiny_run(0)
    m2, h2 = _tiny_run(0)
    m3, _ = _tiny_run(1)
    s1, s2, s3 = m1.state_dict(), m2.state_dict(), m3.state_dict()
    assert h1 == {"loss": h1["loss"], "seconds": h1["seconds"]} and len(h1["loss"]) == 2
    assert h1["loss"] == h2["loss"]
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert not all(torch.equal(s1[k], s3[k]) for k in s1)


def test_training_changes_weights_and_lowers_loss_on_a_learnable_problem():
    torch.manual_seed(0)
    # a local task the baseline can learn: is the image bright on average?
    x = torch.rand(128, 1, 16, 64) * torch.linspace(0.2, 1.0, 128).reshape(-1, 1, 1, 1)
    y = (x.mean((1, 2, 3)) > x.mean()).long()
    model = build(lambda: SmallResNet(widths=(4, 8, 16, 16)), seed=0)
    hist = train(model, x, y, TrainConfig(epochs=20, batch_size=32, lr=1e-2, progress=False))
    assert hist["loss"][-1] < hist["loss"][0]
    assert accuracy(model, x, y) > 0.8
    assert predict(model, x).shape == (128,)


def test_bad_inputs():
    model = SmallResNet(widths=(4, 8, 16, 16))
    with pytest.raises(ValueError, match="same B"):
        train(model, torch.zeros(4, 1, 16, 64), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="tensors"):
        accuracy(model, [1, 2], torch.zeros(2))
    with pytest.raises(TypeError, match="seed must be an int"):
        build(SmallResNet, seed=1.5)
