"""The generic detectors of gclab.exercises.diagnose: each names one way a wrong output differs
from the reference's, from (learner output, expected output, inputs, case quantities) alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gclab.exercises.across import explain
from gclab.exercises.observe import Observation, case_quantities
from gclab.exercises.structure import describe_structure

RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 4, 3, 5))


def _softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def one(actual, expected, inputs=(), **q):
    return explain([Observation(actual, expected, inputs, q or case_quantities(inputs))])


@pytest.mark.parametrize("name,k", [("sqrt(C_i)", np.sqrt(6.0)), ("N", 15.0), ("C", 4.0),
                                    ("2", 2.0), ("sqrt(C)", 2.0 ** 1)])
def test_named_factor_too_large(name, k):
    e = RNG.standard_normal((2, 15, 7))
    q = {"C_i": 6, "N": 15} if name == "2" else {"C_i": 6, "N": 15, "C": 4}
    msg = one(e * k, e, **q)
    assert msg is not None and "too large" in msg
    if name != "sqrt(C)":  # sqrt(C) = 2: named as 2 (the first that fits)
        assert name in msg


def test_named_factor_too_small_and_inferred_from_shapes():
    e = RNG.standard_normal(X.shape)
    msg = one(e / 15.0, e, (X,))  # N = H * W = 15 from the 4-d input
    assert "1/N" in msg and "divided by N" in msg


def test_unnamed_constant_factor():
    e = RNG.standard_normal((3, 5))
    assert "constant factor" in one(e * 1.37, e)


def test_sign_flip():
    e = RNG.standard_normal((3, 5))
    assert "sign is flipped" in one(-e, e)


def test_constant_offset():
    e = RNG.standard_normal((3, 5))
    assert "constant offset" in one(e + 0.3, e)


def test_one_minus():
    e = RNG.random((3, 5))
    assert "1 minus" in one(1.0 - e, e)


def test_transposed_axes():
    e = RNG.standard_normal((2, 3, 5))
    assert "axes permuted" in one(e.transpose(0, 2, 1), e)


def test_reshape_instead_of_transpose():
    e = RNG.standard_normal((2, 3, 5))
    wrong = e.transpose(0, 2, 1).reshape(2, 3, 5)
    assert "wrong places" in one(wrong, e)


def test_missing_residual_and_double_residual():
    e = RNG.standard_normal(X.shape)
    assert "residual is missing" in one(e - X, e, (X,))
    assert "added twice" in one(e + X, e, (X,))


def test_logits_instead_of_weights():
    z = RNG.standard_normal((2, 4, 6))
    assert "logits" in one(z, _softmax(z))


def test_softmax_over_the_wrong_axis():
    z = RNG.standard_normal((2, 4, 6))
    assert "wrong axis" in one(_softmax(z, axis=1), _softmax(z))


def test_rows_that_no_longer_sum_to_one():
    z = RNG.standard_normal((2, 4, 6))
    w = _softmax(z) + 0.01 * RNG.random((2, 4, 6))
    assert "no longer sum to 1" in one(w, _softmax(z))


def test_missing_bias_per_channel():
    e = RNG.standard_normal((2, 4, 3, 5))
    b = RNG.standard_normal((1, 4, 1, 1))
    assert "bias" in one(e - b, e)
    # a difference that also varies per image: the global (context) term, not a bias
    g = RNG.standard_normal((2, 4, 1, 1))
    assert "global term" in one(e - g, e)


def test_off_by_one_and_small_count_differences():
    assert "off by one" in one(np.int64(8), np.int64(7))
    assert "13 too low" in one(1000 - 13, 1000)


def test_findings_with_other_numbers_count_as_the_same():
    e1, e2 = RNG.standard_normal((3, 5)), RNG.standard_normal((4, 2))
    obs = [Observation(e1 + 0.3, e1, error=1.0), Observation(e2 - 0.7, e2, error=2.0)]
    assert "constant offset (-0.7" in explain(obs)  # the worst case's number


def test_several_names_for_one_factor_are_resolved_across_cases():
    """N = N' on one case: the factor is named N' because that is the name every case fits."""
    e1, e2 = RNG.standard_normal((2, 5, 5)), RNG.standard_normal((2, 4, 6))
    obs = [Observation(e1 * 5, e1, quantities={"N": 5, "N'": 5}),
           Observation(e2 * 6, e2, quantities={"N": 4, "N'": 6})]
    assert "factor N' too large" in explain(obs)


def test_logits_scaled_by_a_named_factor():
    z = RNG.standard_normal((2, 4, 6))
    msg = one(_softmax(z / 4.0), _softmax(z / 2.0), C_i=4)
    assert "logits" in msg and "1/sqrt(C_i)" in msg


def test_outputs_in_the_wrong_order_and_a_missing_dict_entry():
    a, b = RNG.standard_normal((2, 3)), RNG.standard_normal((3, 4))
    assert "wrong order" in one((b, a), (a, b))
    assert "no entry for db" in one({"dw": a}, {"dw": a, "db": b})


def test_strings_and_none():
    assert "where the reference returns None" in one("neck.x", None)
    assert "an extra '0' after 'layer1.0.bn2'" in one("layer1.0.bn2.0.weight",
                                                      "layer1.0.bn2.weight")
    assert "'0' where '1' belongs" in one("a.bn2.0.w", "a.bn2.1.w")


def test_a_setting_that_alone_fails():
    obs = [Observation(1.0, 1.0, passed=True, settings={"position": "a"}),
           Observation(2.0, 1.5, passed=False, settings={"position": "b"}),
           Observation(3.0, 3.0, passed=True, settings={"position": "a"}),
           Observation(2.0, 2.5, passed=False, settings={"position": "b"})]
    assert "wrong only where position = 'b'" in explain(obs)


def test_float32_precision():
    e = RNG.standard_normal((4, 6))
    assert "float32" in one(e.astype(np.float32).astype(np.float64) * (1 + 1e-7), e)


def test_overflow():
    z = RNG.standard_normal((2, 6)) * 1000
    with np.errstate(all="ignore"):
        naive = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    assert "overflow" in one(naive, _softmax(z), (z,))


def test_right_on_some_batch_items_only():
    e = RNG.standard_normal((3, 4, 5))
    a = e.copy()
    a[1:] = RNG.standard_normal((2, 4, 5))
    assert "first image only" in one(a, e)


def _obs(passed, **q):
    e = RNG.standard_normal((2, 3))
    return Observation(e if passed else e * 1.1 + RNG.standard_normal((2, 3)), e, (),
                       q, passed=passed, label="c")


def test_right_only_on_square_maps():
    obs = [_obs(True, H=4, W=4, B=2), _obs(False, H=3, W=5, B=2), _obs(True, H=5, W=5, B=1),
           _obs(False, H=4, W=6, B=1)]
    assert "square maps" in explain(obs)


def test_right_only_on_odd_sizes():
    obs = [_obs(True, H=5, W=3, B=2), _obs(False, H=4, W=6, B=2), _obs(False, H=4, W=5, B=1)]
    obs += [_obs(True, H=5, W=3, B=2), _obs(False, H=4, W=6, B=2)]  # a second seed
    assert "odd H and W" in explain(obs)


def test_right_only_for_b_1():
    obs = [_obs(True, H=5, W=3, B=1), _obs(False, H=5, W=3, B=2)] * 2  # two seeds
    assert "B = 1" in explain(obs)


def test_nothing_to_say_about_noise():
    e = RNG.standard_normal((3, 5))
    assert one(RNG.standard_normal((3, 5)), e) is None


def test_structure_extra_missing_and_reordered_layers():
    def ref():
        return nn.Sequential(nn.Conv2d(4, 2, 1), nn.LayerNorm([2, 1, 1]), nn.ReLU(),
                             nn.Conv2d(2, 4, 1))

    extra = nn.Sequential(nn.Conv2d(4, 2, 1), nn.LayerNorm([2, 1, 1]), nn.LayerNorm([2, 1, 1]),
                          nn.ReLU(), nn.Conv2d(2, 4, 1))
    assert "an extra LayerNorm" in describe_structure(extra, ref())
    missing = nn.Sequential(nn.Conv2d(4, 2, 1), nn.ReLU(), nn.Conv2d(2, 4, 1))
    assert "no LayerNorm" in describe_structure(missing, ref())
    swapped = nn.Sequential(nn.Conv2d(4, 2, 1), nn.ReLU(), nn.LayerNorm([2, 1, 1]),
                            nn.Conv2d(2, 4, 1))
    assert "different order" in describe_structure(swapped, ref())
    narrow = nn.Sequential(nn.Conv2d(4, 3, 1), nn.LayerNorm([3, 1, 1]), nn.ReLU(),
                           nn.Conv2d(3, 4, 1))
    assert "shape" in describe_structure(narrow, ref())
    assert describe_structure(ref(), ref()) is None


def test_torch_outputs_are_read_too():
    e = torch.randn(2, 5, dtype=torch.float64)
    assert "sign is flipped" in one(-e, e)


def test_odd_outputs_never_crash_the_detectors():
    odd = [object(), {"a": object()}, (1, "x"), [None, 2.0], np.array(["a", "b"]),
           np.zeros((0, 3)), torch.zeros(2, 3, dtype=torch.complex64), float("nan")]
    for a in odd:
        for e in (np.zeros((2, 3)), 1.0, "s", None, (np.ones(2), np.ones(3)), {"a": 1.0}):
            explain([Observation(a, e)])  # returns a string or None, never raises


def test_squared_and_square_root():
    e = RNG.random((3, 4)) + 0.1
    assert "squared" in one(e**2, e)
    assert "square root of the reference" in one(np.sqrt(e), e)


# --------------------------------------------------------------------------- coincidences
# Each detector against cases built so that it would fire by coincidence: a pass/fail split that
# follows a property on one case per side only, a factor that fits a number on one case, a
# private letter of the engine, a count that is off by one. A wrong cause is worse than none:
# the diagnosis is None or the true cause, never the coincidental one.
def _pair(passed, shape, k=1.0, seed=0, **q):
    e = np.random.default_rng(seed).standard_normal(shape)
    a = e if passed else e * k + 0.3 * np.random.default_rng(seed + 1).standard_normal(shape)
    return Observation(a, e, (), q, passed=passed, label=str(shape))


def _scaled(ks, shape=(2, 5, 4), **q):
    obs = []
    for i, k in enumerate(ks):
        e = np.random.default_rng(i).standard_normal(shape)
        obs.append(Observation(e * k, e, (), {key: v[i] for key, v in q.items()}, error=1.0))
    return obs


COINCIDENCES = {
    # one passing and one failing case that differ in B, but also in C, H, W
    "B = 1 on one case per side": (
        [_pair(True, (2, 3), B=1, C=2, H=3, W=4), _pair(False, (2, 3), B=2, C=4, H=5, W=6)],
        r"B = 1"),
    "square on one case per side": (
        [_pair(True, (2, 3), B=1, C=1, H=2, W=2), _pair(False, (2, 3), B=1, C=3, H=2, W=4),
         _pair(False, (2, 3), B=2, C=2, H=3, W=5)], r"square"),
    "odd sizes, the odd case also the only one with C = 3": (
        [_pair(True, (2, 3), B=2, C=3, H=5, W=3), _pair(False, (2, 3), B=2, C=4, H=4, W=6)],
        r"odd"),
    "C = 1, the one-channel case also the only small map": (
        [_pair(True, (2, 3), B=1, C=1, H=4, W=6), _pair(True, (2, 3), B=1, C=1, H=4, W=6),
         _pair(False, (2, 3), B=1, C=4, H=3, W=5), _pair(False, (2, 3), B=2, C=4, H=3, W=5)],
        r"C = 1"),
    "N' = N on one case": (
        [_pair(True, (2, 3), N=6, **{"N'": 6, "C_i": 2}),
         _pair(False, (2, 3), N=12, **{"N'": 3, "C_i": 4})], r"N' = N"),
    "a setting on one case per side": (
        [Observation(1.0, 1.0, passed=True, settings={"position": "a"}, quantities={"C": 2}),
         Observation(2.0, 1.5, passed=False, settings={"position": "b"}, quantities={"C": 4})],
        r"wrong only where"),
    "a factor 2 on one case, others unnamed": (
        _scaled([2.0, 1.6, 5.0], C_i=[3, 5, 1]), r"factor 2"),
    "a factor 2 on half the cases": (
        _scaled([2.0, 2.0, 1.6, 5.0], C_i=[3, 3, 5, 1]), r"factor 2"),
    "ddof by a size of 2": (
        [Observation(np.arange(1.0, 7.0).reshape(2, 3) * 2, np.arange(1.0, 7.0).reshape(2, 3),
                     (np.ones((2, 5)),), {}, error=1.0)] * 2, r"ddof"),
    "1 - output scaled by 0 (a constant output)": (
        [Observation(np.ones((2, 3, 4, 5)), RNG.standard_normal((2, 3, 4, 5)), (), {},
                     error=1.0)], r"times 0|normalisation of a mean"),
    "wrong places on half the cases": (
        [Observation(np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 1.0]]),
                     error=1.0),
         Observation(np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 1.0]]),
                     error=1.0),
         _pair(False, (3, 4), k=1.7, seed=3), _pair(False, (3, 4), k=1.1, seed=5)],
        r"wrong places"),
}


@pytest.mark.parametrize("name", list(COINCIDENCES))
def test_no_detector_names_a_coincidence(name):
    obs, coincidence = COINCIDENCES[name]
    found = explain(obs)
    assert found is None or not __import__("re").search(coincidence, found), found


def test_a_factor_is_named_by_the_quantity_every_case_shares():
    """C_i is 2 on one case, so '2' fits there too; the cause is C_i on every case."""
    found = explain(_scaled([2.0, 3.0, 5.0], C_i=[2, 3, 5]))
    assert found is not None and "C_i" in found and "factor 2" not in found, found


def test_the_engines_private_letters_are_never_a_factor():
    theta = RNG.standard_normal((2, 6, 4))  # (B, N, C_i): the last size is D to nobody
    e = RNG.standard_normal((2, 6, 5))
    found = one(e * 4.0, e, (theta,))
    assert found is None or "factor D" not in found, found
    assert "D" not in case_quantities((theta,))


@pytest.mark.parametrize("d,quantities,cause", [
    (-1, {"C": 64.0}, "bias"), (-64, {"C": 64.0}, "bias"), (1, {}, "boundary"),
    (-1, {}, "boundary")])
def test_a_count_off_by_one_or_by_c_names_a_bias_only_where_channels_count(d, quantities, cause):
    found = explain([Observation(4225 + d, 4225, (), quantities, error=1.0)])
    assert found is not None and cause in found, found
    if cause == "boundary":
        assert "bias" not in found


def test_a_float_where_an_int_is_expected():
    found = explain([Observation(580.5, 580, (), {}, error=1.0)])
    assert found is not None and "float where an int" in found, found
    assert explain([Observation(2.5, 2.0, (), {}, error=1.0)]) is None or "int" not in explain(
        [Observation(2.5, 2.0, (), {}, error=1.0)])  # a float answer that happens to be whole


@pytest.mark.parametrize("ddof", [0, 1])
def test_ddof_is_named_from_the_reduced_size(ddof):
    acc = RNG.standard_normal((4, 5))
    e = acc.std(axis=1, ddof=1 - ddof)
    found = one(acc.std(axis=1, ddof=ddof), e, (acc,))
    assert found is not None and "ddof" in found, found


def test_a_reduction_over_an_extra_axis_and_a_missing_one():
    x = RNG.standard_normal((2, 4, 3, 5))
    e = x.mean(axis=(2, 3), keepdims=True)
    found = one(np.broadcast_to(x.mean(axis=(1, 2, 3), keepdims=True), e.shape).copy(), e, (x,))
    assert found is not None and "axis 1" in found, found
    found = one(x.sum(axis=2, keepdims=True), x.sum(axis=(2, 3), keepdims=True), (x,))
    assert found is not None and "axis 3" in found and "sum" in found, found
