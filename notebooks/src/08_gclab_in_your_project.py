# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 8 — gclab in your project: insert blocks, load official weights, export
#
# **Expected time:** about 40 minutes. **Runs in:** under 60 s on a laptop CPU.
#
# **You will be able to**
# 1. say what a block computes when it sits *after the last conv* of a residual unit
#    (GCNet, SE) and when it sits *after the unit* (Non-local);
# 2. insert GC, SE, SNL or NL blocks into an existing ResNet with `gclab.nn.insert_blocks`, and
#    count the parameters they add;
# 3. load a GCNet checkpoint saved by mmdet/mmcv into that model and verify it;
# 4. export the model with TorchScript, `torch.export` and ONNX, with the image size left free.
#
# **Assumes:** lessons 4–6 (SNL, GC, SE and their three steps), lesson 7's `SmallResNet`;
# `torch.nn` basics (`state_dict`, `nn.Sequential`).
#
# Exercises are checked by `check("use.<name>", ...)`; `hint("use.<name>", level)` gives a hint
# at level 1 (concept), 2 (shapes) or 3 (pseudo-code).
#
# **Run All** in your copy runs until the first cell that needs an answer you have not written
# yet (a value exercise, or a cell that uses your function on its own): the stub's
# `NotImplementedError` stops it there. Checks of unfinished exercises just say "not yet
# implemented", and cells that only demonstrate run on gclab's implementation until yours is
# done, and say so ("(your ... is not done yet: using gclab's)").

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from gclab.exercises import check, hint  # noqa: F401  (hint: for when you are stuck)
from gclab.exercises.lessons import nb08_your_project as ref  # gclab's answers
from gclab.exercises.fallback import use_or_fallback
from gclab.exercises.lessons.nb08_your_project import mmdet_style_small_resnet
from gclab.experiments.models import SmallResNet
from gclab.nn import insert_blocks, load_mmdet_gcnet

_ = torch.manual_seed(0)  # fixed seed; "_ =" keeps the generator object out of the output

# %% [markdown]
# ## 1. Two places for a block in a residual unit
#
# A residual unit computes $y = \mathrm{ReLU}\big(x + F(x)\big)$, where $F$ is the residual
# branch (conv–BN–ReLU–conv–BN in a BasicBlock; three convs in a Bottleneck) and $x$ the
# shortcut. A block $B$ — GC, SE, SNL, NL, all map $(B, C, H, W) \to (B, C, H, W)$ — can go
# inside the residual branch, before the shortcut is added (`'after_conv3'`: GCNet, SE), or
# after the whole unit, on its output (`'after_block'`: Non-local). Write $y$ for both
# placements yourself before the exercise below; the worked answer follows its check.
#
# After the last conv (and its norm), the block only rescales or shifts the *residual* branch; a
# GC block initialised to zero then leaves $y$ untouched, so a pretrained network starts out
# unchanged. After the unit, the block sees everything the unit produced, shortcut included.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 2.6))
for ax, title, boxes in (
    (axes[0], "'after_conv3'  (GC, SE)", ["x", "F: convs + BN", "block", "+ x", "ReLU", "y"]),
    (axes[1], "'after_block'  (NL)", ["x", "F: convs + BN", "+ x", "ReLU", "block", "y"]),
):
    for i, text in enumerate(boxes):
        colour = "#ffd9a8" if text == "block" else "#e6f0ff"
        ax.text(i, 0, text, ha="center", va="center", fontsize=10,
                bbox=dict(boxstyle="round,pad=0.4", fc=colour))
        if i:
            ax.annotate("", (i - 0.32, 0), (i - 0.68, 0), arrowprops=dict(arrowstyle="->"))
    ax.set(title=title, xlim=(-0.6, len(boxes) - 0.4), ylim=(-0.6, 0.6))
    ax.axis("off")
plt.tight_layout()

# %% [markdown]
# **Exercise `use.unit_output`.** In NumPy, the output of a unit whose block is
# $B(t) = t \odot \sigma(\mathrm{mul}) + \mathrm{add}$ (a GC block with both fusions, its
# terms already computed): `identity` and `branch` are $(B, C, H, W)$, `mul` and `add` are
# $(B, C, 1, 1)$, `position` is `'after_conv3'` or `'after_block'`.

# %%
def unit_output(identity, branch, mul, add, position):
    """The unit's output y (B, C, H, W) with the block at ``position``."""
    # exercise use.unit_output: where the block sits decides what it sees and what follows it
    ### BEGIN SOLUTION
    def block(t):
        return t / (1.0 + np.exp(-mul)) + add

    if position == "after_conv3":
        return np.maximum(identity + block(branch), 0.0)
    return block(np.maximum(identity + branch, 0.0))
    ### END SOLUTION


# %%
check("use.unit_output", unit_output)

# %% [markdown]
# <details><summary>Worked answer (open after your check passes)</summary>
#
# $$
# \underbrace{y = \mathrm{ReLU}\big(x + B(F(x))\big)}_{\texttt{'after\_conv3'}:\ \text{GCNet, SE}}
# \qquad\text{or}\qquad
# \underbrace{y = B\big(\mathrm{ReLU}(x + F(x))\big)}_{\texttt{'after\_block'}:\ \text{Non-local}} .
# $$
# </details>

# %% [markdown]
# ## 2. `insert_blocks`: the blocks into a model you already have
#
# `insert_blocks(model, block, stages, position='after_conv3', units=None, **block_kwargs)`
# works on any ResNet whose stages are `layer1` … `layer4` (torchvision, timm, mmdet, and
# `gclab.experiments.models.SmallResNet`). `stages` uses torchvision's numbers: the paper's c3–c5 is
# `(2, 3, 4)`. It modifies the model in place and returns it with a summary.

# %%
model = SmallResNet().eval()  # your project's network: a ResNet-style classifier
x = torch.randn(2, 1, 16, 64)
with torch.no_grad():
    before = model(x)
model, summary = insert_blocks(model, "gc", stages=(2, 3, 4), ratio=1 / 4)
print(summary)

# %% [markdown]
# No `forward` was patched. The module that was there — here each unit's last norm `bn2` —
# was replaced by `InsertedBlock(bn2, block)`, a two-element `nn.Sequential`:

# %%
print(model.layer3[0].bn2)

# %% [markdown]
# GC's last conv starts at zero, so the network computes exactly what it computed before: you
# can insert blocks into a trained network and fine-tune from there.

# %%
# NBVAL_CHECK_OUTPUT
with torch.no_grad():
    print("output unchanged after inserting GC:", torch.equal(model(x), before))

# %% [markdown]
# The wrapping renames the keys of the wrapped module — `layer3.0.bn2.weight` becomes
# `layer3.0.bn2.0.weight` — and the block's keys are `layer3.0.bn2.1.*`. So load plain
# pretrained weights *before* inserting, or use `load_mmdet_gcnet` afterwards (section 4).
#
# | position | host's keys | block's keys |
# |---|---|---|
# | `'after_conv3'` | `layer3.0.bn2.0.*` | `layer3.0.bn2.1.*` |
# | `'after_block'` | `layer3.0.0.*` | `layer3.0.1.*` |
#
# ## 3. What the blocks cost
#
# One add-fusion GC block on $C$ channels has $P = \lfloor C \cdot \text{ratio} \rfloor$ hidden
# channels (`gclab`'s `ratio` is a fraction, 1/16; the paper writes the reduction $r = 16$ and
# $P = C/r$). Its parameters sit in $W_k$, the first conv, the LayerNorm and the last conv, each
# with a bias (lesson 5); write one block's count in $C$ and $P$ before the exercise.
#
# **Exercise `use.gc_params`.** `gc_params(stages, ratio)`: `stages` is a list of
# `(channels, units)`, one GC block per unit; return the parameters added as an `int`.

# %%
def gc_params(stages, ratio):
    """Parameters added by add-fusion GC blocks, one per residual unit of each stage."""
    # exercise use.gc_params: sum over the stages of units x (one block's parameters)
    ### BEGIN SOLUTION
    total = 0
    for c, n in stages:
        p = int(c * ratio)
        total += n * (2 * c * p + 2 * c + 3 * p + 1)
    return total
    ### END SOLUTION


# %%
check("use.gc_params", gc_params)

# %% [markdown]
# <details><summary>Worked count (open after your check passes)</summary>
#
# $W_k$ ($C + 1$), the first conv ($CP + P$), LayerNorm ($2P$), the last conv ($PC + C$):
#
# $$ \#\theta_{GC}(C) = 2CP + 2C + 3P + 1 , $$
#
# which with $P = C/r$, $r = 16$, is the paper's $2C^2/r + 2C + 3C/r + 1$. At c3–c5 of a
# ResNet-50 (4, 6 and 3 bottlenecks with 512, 1024 and 2048 channels) that is 2,521,741
# parameters.
# </details>

# %%
# NBVAL_CHECK_OUTPUT
count = use_or_fallback(gc_params, ref.ref_gc_params, "gc_params")  # yours once done
small_stages = [(e.channels, 1) for e in summary]  # one unit per stage in SmallResNet
print("GC r4 in SmallResNet:", summary.params_added, "added; by the formula:",
      count(small_stages, 1 / 4))
print("GC r16 at c3-c5 of ResNet-50:", count([(512, 4), (1024, 6), (2048, 3)], 1 / 16))

# %% [markdown]
# The same call inserts the other blocks. Their cost in the small network, next to the
# network itself:

# %%
costs = {}
for name, kwargs in [("gc", {"ratio": 1 / 4}), ("se", {"ratio": 1 / 4}), ("snl", {}),
                     ("nl", {})]:
    _, s = insert_blocks(SmallResNet(), name, stages=(2, 3, 4), **kwargs)
    costs[name.upper()] = s.params_added
base = sum(p.numel() for p in SmallResNet().parameters())
fig, ax = plt.subplots(figsize=(6, 2.8))
ax.barh(list(costs), [100 * v / base for v in costs.values()], color="#4c72b0")
ax.set(xlabel="parameters added (% of SmallResNet)", title="blocks at c3-c5")
plt.tight_layout()

# %% [markdown]
# ### Non-local's placement: every second unit
#
# The Non-local paper put its blocks *after* every second residual unit of a stage (res4 of
# ResNet-50: 3 of 6 units). `units=k` does that: every $k$-th unit of each chosen stage.
#
# **Exercise `use.every_kth`.** `every_kth(n_units, k)`: the 0-based indices of the units that
# get a block.

# %%
def every_kth(n_units, k):
    """0-based indices of the units that 'every k-th unit' selects."""
    # exercise use.every_kth: count the units from one, as the paper does
    ### BEGIN SOLUTION
    return [i for i in range(n_units) if (i + 1) % k == 0]
    ### END SOLUTION


# %%
check("use.every_kth", every_kth)

# %% [markdown]
# <details><summary>Worked answer (open after your check passes)</summary>
#
# Counting units from one, unit number $i + 1$ gets a block when it is a multiple of $k$: the
# 0-based indices $k-1, 2k-1, \dots$ (for 6 units and $k = 2$: 1, 3, 5).
# </details>

# %%
deeper = SmallResNet(layers=(1, 4, 4, 1))
_, nl_summary = insert_blocks(deeper, "nl", stages=(2, 3), position="after_block", units=2)
print(nl_summary)

# %% [markdown]
# ## 4. Official weights: a GCNet checkpoint from mmdet
#
# mmdet's GCNet models keep each mmcv `ContextBlock` *inside* its residual unit as
# `unit.context_block`, applied after the last norm, and a detector saves its backbone under
# `backbone.`: `backbone.layer2.0.context_block.conv_mask.weight`,
# `backbone.layer2.0.context_block.channel_add_conv.0.weight`, … We make such a checkpoint in
# small: `SmallResNet` whose units in stages 2–4 carry mmcv's `ContextBlock` as
# `context_block` (`mmdet_style_small_resnet`, 20 lines in `gclab.exercises.lessons.nb08_your_project`),
# random weights, saved as mmdet saves it (a dict with `state_dict`), plus one neck weight.

# %%
mmdet_model = mmdet_style_small_resnet(ratio=1 / 4)
# a detector's backbone has no classifier: leave out fc, as mmdet's checkpoints do
state = {"backbone." + k: v for k, v in mmdet_model.state_dict().items() if "fc." not in k}
state["neck.lateral_convs.0.conv.weight"] = torch.randn(8, 32, 1, 1)
ckpt = Path(tempfile.mkdtemp()) / "gcnet_small_r4_c3-c5.pth"
torch.save({"meta": {"epoch": 12}, "state_dict": state}, ckpt)
print(*[k for k in state if "layer3.0" in k][-6:], sep="\n")

# %% [markdown]
# In the gclab model those tensors live elsewhere: `bn2` is now child `0` of the
# `InsertedBlock`, the block child `1`, and inside the block gclab names the steps
# (`context_modeling.conv_mask`, `transform.add`) where mmcv wrote `conv_mask`,
# `channel_add_conv`.
#
# **Exercise `use.map_key`.** `map_key(key)`: the key of our model (`SmallResNet` with GC r4 at
# stages 2–4) that a checkpoint key loads into, or `None` for keys outside `backbone.`.

# %%
def map_key(key):
    """mmdet checkpoint key -> gclab model key (None: not part of the backbone)."""
    # exercise use.map_key: drop 'backbone.'; bn2 -> bn2.0 and context_block -> bn2.1 in
    # stages 2-4, with mmcv's names inside the block replaced by gclab's
    ### BEGIN SOLUTION
    if not key.startswith("backbone."):
        return None
    parts = key[len("backbone."):].split(".")
    if parts[0] in ("layer2", "layer3", "layer4") and parts[2] == "bn2":
        parts[2] = "bn2.0"
    elif parts[0] in ("layer2", "layer3", "layer4") and parts[2] == "context_block":
        parts[2] = "bn2.1"
        names = {"conv_mask": "context_modeling.conv_mask", "channel_add_conv": "transform.add"}
        parts[3] = names.get(parts[3], parts[3])
    return ".".join(parts)
    ### END SOLUTION


# %%
check("use.map_key", map_key)

# %% [markdown]
# `load_mmdet_gcnet` does this renaming from the model's own structure (it finds every
# `InsertedBlock`), takes the backbone out of a detector's checkpoint, and reports what it could
# not place. Our classifier's `fc` is not in a detector's backbone, so `strict=False`:

# %%
ours = insert_blocks(SmallResNet(), "gc", stages=(2, 3, 4), ratio=1 / 4)[0].eval()
report = load_mmdet_gcnet(ours, ckpt, strict=False)
print(report)

# %%
# NBVAL_CHECK_OUTPUT
with torch.no_grad():
    diff = (ours.features(x) - mmdet_model.features(x)).abs().max().item()
print("same features as the mmcv model (max |diff| <= 1e-5):", diff <= 1e-5)

# %% [markdown]
# The real checkpoints (GCNet's README: Mask R-CNN R50-FPN, GC r16 or r4 at c3–c5) load the
# same way into a torchvision ResNet-50 after
# `insert_blocks(resnet50, "gc", stages=(2, 3, 4), ratio=1/16)`: a Bottleneck's last norm is
# `bn3`, so the keys go to `layerX.Y.bn3.0.*` and `layerX.Y.bn3.1.*`.
#
# ## 5. Export, with the image size left free
#
# Because the blocks are ordinary modules in an `nn.Sequential`, the model scripts, traces and
# exports as it is. A second resolution checks that $H$ and $W$ were not baked in.

# %%
x2 = torch.randn(2, 1, 24, 48)
with torch.no_grad():
    scripted = torch.jit.script(ours)
    print("TorchScript, 2nd size:", torch.allclose(scripted(x2), ours(x2), atol=1e-5))

# %%
H, W = torch.export.Dim("H", min=8, max=512), torch.export.Dim("W", min=8, max=512)
program = torch.export.export(ours, (x,), dynamic_shapes={"x": {2: H, 3: W}})
with torch.no_grad():
    print("torch.export, 2nd size:", torch.allclose(program.module()(x2), ours(x2), atol=1e-5))

# %% [markdown]
# ONNX goes through the same exported program; onnxruntime then runs it at both sizes.

# %%
try:
    import onnxruntime
except ImportError as err:
    print("onnxruntime is not installed, ONNX part skipped:", err)
else:
    path = ckpt.with_suffix(".onnx")
    torch.onnx.export(program, (x,), dynamo=True).save(str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    with torch.no_grad():
        for inp in (x, x2):
            (logits,) = session.run(None, {name: inp.numpy()})
            print(tuple(inp.shape), "ONNX == PyTorch:", np.allclose(logits, ours(inp).numpy(), atol=1e-4))

# %% [markdown]
# `torch.compile(ours, dynamic=True)` works too (`tests/test_export.py` runs it with the
# `eager`, `aot_eager` and `inductor` backends); it is left out here only because compiling
# takes longer than this whole lesson.
#
# ## Summary
# - `'after_conv3'`: $y = \mathrm{ReLU}(x + B(F(x)))$ (GC, SE); `'after_block'`:
#   $y = B(\mathrm{ReLU}(x + F(x)))$ (NL, every second unit with `units=2`).
# - `insert_blocks(model, "gc", stages=(2, 3, 4), ratio=1/16)` wraps modules, never patches a
#   forward; GC/SNL/NL start as the identity; the summary counts what was added
#   ($2CP + 2C + 3P + 1$ per GC block).
# - `load_mmdet_gcnet(model, path)` maps mmdet's `layerX.Y.context_block.*` and the wrapped
#   norms onto the gclab model and reports missing/unexpected keys.
# - TorchScript, `torch.export` with `Dim`s for $H, W$, and ONNX all work on the result.
#
# **Check yourself:** `catalog("08_gclab_in_your_project")` lists this lesson's exercises;
# `gclab grade notebooks/08_gclab_in_your_project.ipynb` grades the whole notebook.
