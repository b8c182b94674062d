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


def _bright_task(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 16, 64, generator=g) * torch.linspace(0.2, 1.0, n).reshape(-1, 1, 1, 1)
    return x, (x.mean((1, 2, 3)) > x.mean()).long()


def _protocol(**kw):
    base = dict(batch_size=32, lr=1e-2, max_steps=300, eval_every=10, patience=40,
                cooldown_steps=20, warmup_steps=10, learn_above=0.75, progress=False)
    return TrainConfig(**{**base, **kw})


def test_early_stopping_stops_a_run_that_learned_and_levelled_off():
    x, y = _bright_task()
    model = build(lambda: SmallResNet(widths=(4, 8, 16, 16)), seed=0)
    hist = train(model, x, y, _protocol(), eval_data=(x[:128], y[:128]))
    assert not hist["capped"] and hist["steps"] < 300
    # stopped exactly cooldown steps after the criterion fired, which needs >= patience steps
    # without a gain since the best evaluation
    assert hist["steps"] == hist["stop_step"] + 20 and hist["stop_step"] >= 40
    assert hist["curve"][-1][0] == hist["steps"] and max(a for _, a in hist["curve"]) >= 0.75


def test_a_run_that_never_learns_trains_to_the_maximum_and_is_capped():
    x, _ = _bright_task()
    y = torch.randint(0, 2, (x.shape[0],), generator=torch.Generator().manual_seed(1))
    model = build(lambda: SmallResNet(widths=(4, 8, 16, 16)), seed=0)
    hist = train(model, x, y, _protocol(max_steps=120, lr=1e-3),
                 eval_data=(x[:64], 1 - y[:64]))  # held-out labels the model cannot learn
    assert hist["capped"] and hist["steps"] == 120 and hist["stop_step"] == 120


def test_warm_up_cosine_and_cool_down_shape_the_learning_rate():
    x, y = _bright_task(64)
    seen = []
    opt_step = torch.optim.AdamW.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return opt_step(self, *a, **k)

    torch.optim.AdamW.step = spy
    try:
        model = build(lambda: SmallResNet(widths=(4, 8, 16, 16)), seed=0)
        train(model, x, y, _protocol(max_steps=110, patience=0, warmup_steps=10,
                                     cooldown_steps=20, lr=1e-2), eval_data=(x, y))
        fixed = list(seen)
        seen.clear()
        model = build(lambda: SmallResNet(widths=(4, 8, 16, 16)), seed=0)
        hist = train(model, x, y, _protocol(max_steps=300, patience=30, warmup_steps=10,
                                            cooldown_steps=20, lr=1e-2, learn_above=0.0),
                     eval_data=(x, y))
    finally:
        torch.optim.AdamW.step = opt_step
    assert len(fixed) == 110
    assert fixed[0] == pytest.approx(1e-3) and fixed[5] == pytest.approx(1e-3 + 0.9e-2 * 0.5)
    assert fixed[10] == pytest.approx(1e-2)
    # cosine: half-way between 1e-2 and 1e-3 at the middle of the 100 steps after warm-up
    assert fixed[60] == pytest.approx(1e-3 + 0.9e-2 * 0.5)
    assert fixed[-1] == pytest.approx(1e-3, rel=0.01)
    # early stop: the cool-down takes the lr from its value at the stop to a tenth of it
    s = hist["stop_step"]
    assert not hist["capped"] and hist["steps"] == s + 20
    assert seen[s] < seen[s - 1] and seen[-1] == pytest.approx(
        seen[s - 1] * (1 - 0.9 * 19 / 20), rel=0.05)


def test_bad_protocol_configs():
    x, y = _bright_task(32)
    model = SmallResNet(widths=(4, 8, 16, 16))
    with pytest.raises(ValueError, match="needs max_steps"):
        train(model, x, y, _protocol(), eval_data=None)
    with pytest.raises(ValueError, match="must fit"):
        train(model, x, y, _protocol(max_steps=20), eval_data=(x, y))
    with pytest.raises(ValueError, match="patience must be an int"):
        train(model, x, y, _protocol(patience=-1), eval_data=(x, y))
