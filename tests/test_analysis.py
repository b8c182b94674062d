"""gclab.experiments.analysis against hand computations and independent formulas."""

import math

import numpy as np
import pytest
import torch
from _tol import f32_tol
from torch import nn

from gclab.experiments import analysis
from gclab.experiments.models import SmallResNet
from gclab.nn import GCBlock, NonLocal2d, SEBlock


def test_cosine_distance_known_vectors():
    u = torch.tensor([[1.0, 0.0], [1.0, 1.0], [3.0, 4.0]])
    v = torch.tensor([[0.0, 2.0], [-1.0, -1.0], [3.0, 4.0]])
    # orthogonal -> 1, opposite -> 2, identical -> 0
    # float32: a 2-term dot product over two 2-term norms, values <= 2 (tests/_tol.py)
    want = torch.tensor([1.0, 2.0, 0.0])
    got = analysis.cosine_distance(u, v)
    torch.testing.assert_close(got, want, atol=f32_tol(3 * 2, 2.0), rtol=0)
    with pytest.raises(ValueError, match="same shape"):
        analysis.cosine_distance(u, v[:2])


def test_mean_pairwise_matches_numpy_loop():
    rng = np.random.default_rng(0)
    v = rng.standard_normal((3, 5, 4))
    expected = []
    for b in range(3):
        ds = [1 - v[b, i] @ v[b, j] / (np.linalg.norm(v[b, i]) * np.linalg.norm(v[b, j]))
              for i in range(5) for j in range(5) if i != j]
        expected.append(np.mean(ds))
    got = analysis.mean_pairwise_cosine_distance(torch.from_numpy(v))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)
    # identical rows: distance 0
    same = torch.ones(1, 4, 3)
    # 1 - dot/(|a||b|) with 3-term sums: a few roundings of size 1 (three 3-term sums)
    assert analysis.mean_pairwise_cosine_distance(same).abs().max() < f32_tol(3 * 3)
    with pytest.raises(ValueError, match="N >= 2"):
        analysis.mean_pairwise_cosine_distance(torch.ones(1, 1, 3))


def test_flops_of_1x1_conv_match_formula():
    b, cin, cout, h, w = 2, 6, 5, 7, 3
    conv = nn.Conv2d(cin, cout, 1)
    assert analysis.count_flops(conv, torch.randn(b, cin, h, w)) == 2 * b * cin * cout * h * w
    assert analysis.count_params(conv) == cin * cout + cout


def test_flops_of_nl_block_include_attention():
    # embedded gaussian, C=8, Ci=4, N=H*W=12: three 1x1 convs C->Ci, one Ci->C, two bmm N x N x Ci
    c, ci, n = 8, 4, 12
    x = torch.randn(1, c, 3, 4)
    for mode in ("embedded_gaussian", "dot_product"):
        nl = NonLocal2d(c, reduction=2, mode=mode)
        assert analysis.count_flops(nl, x) == 2 * (3 * c * ci * n + ci * c * n + 2 * n * n * ci)
        assert nl.impl == "auto"  # restored after counting
    # the fast dot_product path multiplies in the cheaper order phi^T g first: no N x N matrix
    fast = analysis.count_flops(NonLocal2d(c, mode="dot_product"), x, explicit_nl=False)
    assert fast == 2 * (3 * c * ci * n + ci * c * n + 2 * n * ci * ci)


def test_gc_params_match_paper_formula():
    c, r = 32, 4
    gc = GCBlock(c, ratio=1 / r)
    # 2C^2/r + 2C + 3C/r + 1 (reference notes, mmcv ContextBlock)
    assert analysis.count_params(gc) == 2 * c * c // r + 2 * c + 3 * c // r + 1


def test_query_independence_of_gc_is_exactly_zero_and_nl_is_not():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 16, 64)
    gc_model = SmallResNet(block="gc").eval()
    gc_block = analysis.find_blocks(gc_model)[0][1]
    stats = analysis.query_independence(gc_model, x, block=gc_block)
    # one map shared by every query: 1 - cos of identical N-term rows (N = 256 positions at the
    # block, three N-term sums), so only rounding is left: f32_tol(3N) = 1.6e-5 (tests/_tol.py)
    assert stats["attention"] < f32_tol(3 * 256)
    assert stats["input"] > 0.01
    nl_model = SmallResNet(block="nl").eval()
    for p in analysis.find_blocks(nl_model)[0][1].parameters():
        nn.init.normal_(p, std=0.5)  # untrained but query-dependent weights
    nl_stats = analysis.query_independence(nl_model, x)
    assert nl_stats["attention"] > 1e-3
    assert set(nl_stats) == {"input", "output", "attention"}


def test_attention_maps_rows_match_block_attention():
    torch.manual_seed(1)
    model = SmallResNet(block="nl").eval()
    nl = analysis.find_blocks(model)[0][1]
    for p in nl.parameters():
        nn.init.normal_(p, std=0.3)
    img = torch.rand(1, 1, 16, 64)
    maps, (h, w) = analysis.attention_maps(model, img, [(0, 0), (3, 15)])
    assert (h, w) == (4, 16) and maps.shape == (2, 4, 16)
    # 64 probabilities summing to 1: normaliser, divisions and this sum, ~sqrt(9·64)·u each ×10
    assert torch.allclose(maps.sum((1, 2)), torch.ones(2), atol=f32_tol(9 * 64), rtol=0)
    inp, _ = analysis.capture(model, img, nl)
    _, att = nl(inp, return_attention=True)
    # the same computation on the same input: equal up to one softmax's rounding (as above)
    assert torch.allclose(maps[1].flatten(), att[0, 3 * 16 + 15], atol=f32_tol(9 * 64), rtol=0)
    with pytest.raises(ValueError, match="outside"):
        analysis.attention_maps(model, img, [(4, 0)])
    fig = analysis.plot_attention(img, maps, [(0, 0), (3, 15)], (h, w))
    assert len(fig.axes) == 2


def test_block_costs_and_summary():
    model = SmallResNet(block="gc", block_kwargs={"ratio": 1 / 4})
    costs = analysis.block_costs(model, torch.rand(1, 1, 16, 64), latency=False)
    names = [k for k in costs if k not in ("blocks", "model")]
    assert names == ["layer3.0.bn2.1"]
    c = model.widths[2]
    assert costs["blocks"]["params"] == 2 * c * c // 4 + 2 * c + 3 * c // 4 + 1
    assert 0 < costs["blocks"]["flops"] < costs["model"]["flops"]
    mean, std = analysis.summarize([1.0, 2.0, 3.0])
    assert mean == 2.0 and math.isclose(std, 1.0)


def test_zero_vectors_have_distance_one_by_convention():
    z, u = torch.zeros(1, 3), torch.tensor([[1.0, 2.0, 3.0]])
    assert torch.equal(analysis.cosine_distance(z, u), torch.tensor([1.0]))
    # a dead block (all attention rows zero) scores 1 on the pairwise statistic
    assert torch.allclose(analysis.mean_pairwise_cosine_distance(torch.zeros(2, 4, 5)),
                          torch.ones(2))


def test_output_before_fusion_of_mul_blocks_is_one_gate_for_all_positions():
    torch.manual_seed(0)
    se = SEBlock(16, ratio=1 / 4)
    x = torch.rand(2, 16, 3, 5)
    parts = analysis.block_internals(se, x)
    assert torch.allclose(parts["output"], se.gate(x).expand(-1, -1, 3, 5))
    gc = GCBlock(16, ratio=1 / 4, fusions=("mul", "add"))
    for p in gc.parameters():
        nn.init.normal_(p, std=0.3)
    out = analysis.block_internals(gc, x)["output"]
    assert out.shape == (2, 32, 3, 5)
    flat = out.reshape(2, 32, -1).transpose(1, 2)
    # identical rows of 32 channels: only rounding of three 32-term sums is left (tests/_tol.py)
    assert analysis.mean_pairwise_cosine_distance(flat).abs().max() < f32_tol(3 * 32)


def _nl_model(std):
    torch.manual_seed(0)
    model = SmallResNet(block="nl").eval()
    block = analysis.find_blocks(model)[0][1]
    if std is not None:
        for p in block.parameters():
            nn.init.normal_(p, std=std)
    return model, block


def test_entropy_and_centred_distance_tell_a_uniform_map_from_a_learned_shared_one():
    """A fresh NL (zero logits: every row uniform) scores ~0 on the cosine statistic, like a
    learned shared map; entropy and the centred distance tell the two apart."""
    x = torch.rand(2, 1, 16, 64)
    fresh, fb = _nl_model(None)
    with torch.no_grad():
        for conv in (fb.theta, fb.phi):
            conv.weight.zero_()
            conv.bias.zero_()  # logits exactly 0: every row is 1/N'
    plain = analysis.query_independence(fresh, x, block=fb)
    shape = analysis.attention_shape_statistics(fresh, x, fb)
    assert plain["attention"] < 1e-5  # the old statistic: "query-independent"
    assert shape["entropy"] == pytest.approx(1.0, abs=1e-5)
    # GC: one peaked shared map -> entropy < 1 and centred distance ~0
    gc = SmallResNet(block="gc").eval()
    gb = analysis.find_blocks(gc)[0][1]
    with torch.no_grad():
        nn.init.normal_(gb.context_modeling.conv_mask.weight, std=2.0)
    gshape = analysis.attention_shape_statistics(gc, x, gb)
    assert gshape["entropy"] < 0.95 and gshape["centered"] < 1e-4
    # a query-dependent NL: centred rows differ
    qd, qb = _nl_model(0.5)
    assert analysis.attention_shape_statistics(qd, x, qb)["centered"] > 0.05


def test_mean_map_accuracy_matches_a_hand_built_shared_map_model():
    """Labels = the predictions of a copy of the model whose NL block is rebuilt by hand with
    one map per image, z_i = x_i + W_z sum_j abar_j g(x_j), abar = the mean of the rows of the
    block's own attention: mean_map_accuracy scores them 1.0, the unchanged model does not."""
    import copy

    from gclab.experiments.train import accuracy, predict

    torch.manual_seed(3)
    x = torch.rand(8, 1, 16, 64)
    model = SmallResNet(block="nl", dense=True).eval()
    block = analysis.find_blocks(model)[0][1]
    for p in block.parameters():
        nn.init.normal_(p, std=0.5)

    class HandShared(nn.Module):
        def __init__(self, nl):
            super().__init__()
            self.nl = nl

        def forward(self, inp):
            _, att = self.nl.context_modeling(inp)  # (B, N, N')
            abar = att.mean(dim=1)  # (B, N')
            g = self.nl.g(inp).flatten(2)  # (B, Ci, N')
            y = torch.einsum("bn,bcn->bc", abar, g)[:, :, None, None].expand(
                -1, -1, *inp.shape[2:])
            return inp + self.nl.transform(y)

    shared = copy.deepcopy(model)
    unit = shared.layer3[0]
    unit[1] = HandShared(unit[1])
    with torch.no_grad():
        d = shared(x).diff(dim=1)[:, 0]  # (B, h, w): logit of class 1 minus class 0
        # the decision boundary in the widest gap between cells in the middle third of the
        # sorted margins: no cell sits on it, so the two float paths agree on every label
        s = d.flatten().sort().values
        lo, hi = len(s) // 3, 2 * len(s) // 3
        k = lo + int(torch.argmax(s[lo + 1:hi + 1] - s[lo:hi]))
        assert s[k + 1] - s[k] > 1e-4
        for m in (model, shared):
            m.fc.bias[1] -= (s[k] + s[k + 1]) / 2
    y = predict(shared, x)
    assert 0.3 < float(y.float().mean()) < 0.7
    assert analysis.mean_map_accuracy(model, x, y, block) == 1.0
    assert accuracy(model, x, y) < 1.0  # the real block's own maps give other predictions
    with pytest.raises(TypeError, match="NonLocal2d"):
        analysis.mean_map_accuracy(model, x, y, SEBlock(64))


def _concatenation_model(sign: float):
    """SmallResNet with a concatenation NL whose pairwise terms are all ``sign`` x (positive):
    theta and phi ignore the input (weights 0, biases 1) and w = sign * 1, so every logit
    w_theta^T theta_i + w_phi^T phi_j = sign * 2 Ci. W_z and its bias are random."""
    torch.manual_seed(0)
    model = SmallResNet(block="nl", block_kwargs={"mode": "concatenation"}).eval()
    block = analysis.find_blocks(model)[0][1]
    with torch.no_grad():
        for conv in (block.theta, block.phi):
            conv.weight.zero_()
            conv.bias.fill_(1.0)
        block.concat_project.weight.fill_(sign)
        nn.init.normal_(block.conv_out.weight, std=0.5)
        nn.init.normal_(block.conv_out.bias, std=0.5)
    return model, block


def test_a_dead_concatenation_block_is_marked_dead_and_not_scored():
    """Every ReLU(w^T[theta_i; phi_j]) is 0: the block's output is x + b at every position of
    every image (the formula z = x + W_z 0 + b, checked on the forward pass itself), and the
    run's measurements call it dead and leave its statistics empty instead of reporting the
    zero-vector convention (distance 1) or an entropy of all-zero rows. The live twin (every
    logit positive, equal: uniform rows) is scored: entropy exactly 1."""
    from gclab.experiments.reproduce import block_measurements

    x = torch.rand(4, 1, 16, 64)
    y = torch.randint(0, 2, (4,))
    dead, db = _concatenation_model(-1.0)
    inp, out = analysis.capture(dead, x, db)
    torch.testing.assert_close(out - inp, db.conv_out.bias[None, :, None, None].expand_as(inp),
                               atol=f32_tol(2, float(inp.abs().max()) + 2), rtol=0)
    assert analysis.dead_attention_share(dead, x, db) == 1.0
    m = block_measurements(dead, x, x, y)
    assert m["attention_dead_share"] == 1.0
    for k in ("dist_output", "dist_attention", "entropy_attention", "dist_attention_centered"):
        assert m[k] == "", k
    assert isinstance(m["dist_input"], float)  # the input is still there to describe
    live, lb = _concatenation_model(1.0)
    assert analysis.dead_attention_share(live, x, lb) == 0.0
    m = block_measurements(live, x, x, y)
    assert m["attention_dead_share"] == 0.0
    assert m["entropy_attention"] == pytest.approx(1.0, abs=1e-4)  # uniform rows
    assert m["dist_attention"] == pytest.approx(0.0, abs=1e-4)  # every query the same map
    # softmax rows sum to 1: never dead
    gc = SmallResNet(block="gc").eval()
    assert analysis.dead_attention_share(gc, x, analysis.find_blocks(gc)[0][1]) == 0.0


def test_live_pairs_of_a_concatenation_block():
    """dead_trace.live_pairs: every logit is sign * 2 Ci (theta = phi = 1, w = sign): no pair
    live and the mean logit -2 Ci, or every pair live; a mixed w splits them."""
    from gclab.experiments.dead_trace import live_pairs

    x = torch.rand(2, 1, 16, 64)
    for sign, live in ((-1.0, 0.0), (1.0, 1.0)):
        model, block = _concatenation_model(sign)
        inp, _ = analysis.capture(model, x, block)
        got = live_pairs(block, inp)
        assert got["live"] == live
        assert got["mean_logit"] == pytest.approx(sign * 2 * block.inter_channels, rel=1e-5)
    with pytest.raises(ValueError, match="concatenation"):
        live_pairs(analysis.find_blocks(SmallResNet(block="nl"))[0][1], inp)
