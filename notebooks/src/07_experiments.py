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
# # Lesson 7 — Experiments: where a block converges, and how fast it gets there
#
# **Expected time:** about 45 minutes. **Runs in:** under 20 s on a laptop CPU (it reads the
# results of `gclab reproduce`; training them takes about half an hour of CPU).
#
# **You will be able to**
# 1. tell apart two claims that one number used to mix: **where a model converges** (its
#    accuracy once training has levelled off) and **how fast it gets there** (steps to a level,
#    and the share of seeds that get there at all);
# 2. summarise runs over seeds as mean ± sample standard deviation, and say when a difference
#    is more than seed noise (Welch's $t$ and its confidence interval);
# 3. compare a learn-or-not outcome as a **proportion** (Fisher's exact test) and steps to a
#    level with a **rank test** in which a seed that never gets there counts as the slowest;
# 4. count the FLOPs of an NL block and a GC block by hand and check them against
#    `FlopCounterMode`;
# 5. judge, for each claim of the GCNet paper, what our small experiment says — and what a
#    verdict from a fixed short budget would have said instead.
#
# **Assumes:** lessons 3 to 6 (NL, SNL, GC, SE and their three steps); mean and variance.
#
# Exercises are checked by `check("exp.<name>", ...)`; `hint("exp.<name>", level)` gives a hint
# at level 1 (concept), 2 (shapes and steps) or 3 (pseudo-code).
#
# **Run All** shows every committed result first (sections 1-3 need no code of yours); the
# exercises come after them, and the first stub you have not written yet stops Run All there
# with its `NotImplementedError` (checks of unfinished exercises just say "not yet
# implemented").

# %%
import csv
import json
import warnings

import numpy as np
from IPython.display import Image, display
from scipy import stats

from gclab.exercises import check, hint  # noqa: F401  (hint is there for you)
from gclab.experiments import analysis, report
from gclab.experiments.comparisons import bar_check
from gclab.experiments.reproduce import RESULTS_DIR

# %% [markdown]
# ## 1. What changed, and why
#
# The first versions of this lesson trained every model for a fixed **200 steps** and compared
# final accuracies. Near a learning transition a seed either finds the key within 200 steps
# (accuracy ~0.99) or does not (~0.5), so those tables averaged a learn-or-not coin flip, and
# their verdicts — "GC is worse than NL", "LayerNorm hurts", "average pooling beats attention" —
# measured **how fast** a block learns under that budget, not **where it converges**. The paper
# trains to convergence, so its claims are about converged models.
#
# The committed results now come from a **converged protocol** (`docs/experiments.md`, third,
# fourth and fifth designs, each committed before its runs):
#
# * a **validation split with held-out handwriting** (digit images that neither training nor
#   test uses) read every 50 steps;
# * a warm-up, then a cosine learning-rate decay; **early stopping** once the validation
#   accuracy has levelled off (no gain of 0.005 in 200 steps) — but never while a run is still
#   below 0.75: such a run trains to the **maximum** and is reported **capped**;
# * or, on `digitgrid`, a **fixed budget** long enough that every curve is flat over its last
#   quarter, checked per run;
# * per model, four numbers instead of one: the **accuracy of the seeds that learned**, the
#   **share of seeds that learned**, the **steps to 90 % of the ceiling** (a seed that never
#   gets there is kept, as "never"), and where **every converged seed** ends, learned or not.
#
# `gclab reproduce` trains one small ResNet (`SmallResNet`: four stages of one BasicBlock,
# 8-16-64-32 channels, receptive field 41 px) with **one** block in `layer3` (64 channels, a
# $4 \times 16$ map). Five tasks on a $16 \times 64$ strip:
#
# * `lookalike` (key side 8 px): a handwritten **key** digit, 1 or 8 (the pair that handwriting
#   confuses most), at the left end; two distractor digits in the middle; 32 right-half cells,
#   each blank or holding a bar, labelled `key XOR (bar is vertical)`. No right-half feature of
#   the plain CNN sees the key: the baseline is at chance *by construction*. Nine models.
# * `manykeys` (level 2): eight independent **key bits** (a ring or a plus in the two left map
#   columns of each of the four rows) and a **marker** in every other cell that names one of
#   its row's two key columns; a scored cell's label is the key bit its marker names. The
#   scored cells together need all eight bits: GC must carry them through its one pooled
#   context and its bottleneck (here at $C = 128$: 8 wide at r16, 32 at r4), NL can give each
#   query its own context. Baseline, NL, SNL, GC r16, GC r4.
# * `digitkeys` (key side 6 px): four handwritten key digits of **any class 0-9**, two in each
#   half of the rows, and a marker in every other cell that names one of its half's two key
#   columns; a scored cell's label is the **class** of that key (ten classes, chance about
#   0.1). The scored cells need all four digits (about 13 bits) through one context; small
#   held-out handwriting keeps every model below 1.0. Baseline, NL, SNL, GC r16, GC r4, at
#   $C = 128$ like `manykeys`. The column `keys_read` counts the keys a model reads (0-4).
# * `digitgrid` (4 key columns): **sixteen** handwritten digits, 4 px each, fill the left four
#   map columns; every other cell holds one of four markers naming a key column of its row;
#   a scored cell's label is the class of that key. Each query needs one digit, the scored
#   cells together all sixteen (53 bits): NL's per-query map can fetch each cell its own key,
#   SNL's and GC's one context must carry them all. A 4-px digit is hard to read (an SVM on
#   the keys alone: 0.83), so no model reaches 0.97. Same models, $C = 128$; every block run
#   trains 2,400 steps, no early stopping; `keys_read` counts 0-16.
# * `longrange` (lesson 3): are the two end glyphs the same? The four NL pairwise functions.
#
# Where the committed results were made (one line per `gclab reproduce` invocation), how long
# it took, and what was cut:

# %%
machine = json.loads((RESULTS_DIR / "machine.json").read_text())
for part in machine["parts"]:
    print(f"{part['command']}\n    tasks {', '.join(part['tasks'])} on {part['cpu']}, "
          f"{part['date']}: {part['runs']} runs ({part['capped_runs']} capped), "
          f"{part['wall_minutes']:.1f} min wall, {part['cpu_minutes']:.1f} min CPU, "
          f"mean load {part['load_average_1min_mean_during_run']}")
print("runs not started (--stop-after):", len(machine["skipped_runs"]))

# %%
with open(RESULTS_DIR / "ablation.csv") as f:
    rows = list(csv.DictReader(f))
with open(RESULTS_DIR / "comparisons.csv") as f:
    comparisons = list(csv.DictReader(f))
with open(RESULTS_DIR / "curves.csv") as f:
    curves = list(csv.DictReader(f))
print(len(rows), "runs;", len(comparisons), "comparison rows;", len(curves), "curve points")

# %% [markdown]
# ## 2. The committed results
#
# Per model: how many seeds learned (their final validation accuracy got at least halfway from
# chance to the ceiling, the best model's median), the test accuracy of those seeds, and for
# every seed the steps to 90 % of the way from chance to the ceiling, and its test accuracy:

# %%
# NBVAL_CHECK_OUTPUT
print("\n".join(report.accuracy_lines(rows)))

# %% [markdown]
# Every seed is a dot; an open dot is a seed that did not learn. The bar averages only the
# seeds that learned — a learn-or-not outcome is never averaged into one number:

# %%
display(Image(filename=str(RESULTS_DIR / "ablation.png")))

# %% [markdown]
# The validation curves, one line per seed and one panel per model. Read two things off each
# panel: **where** the lines end up (the height of their flat last part) and **when** they
# cross the dotted line (90 % of the way from chance to the ceiling). A dashed line is a run
# that reached the maximum number of steps without levelling off above 0.75 (capped):

# %%
display(Image(filename=str(RESULTS_DIR / "curves.png")))

# %% [markdown]
# The paper's comparisons, each decided on four metrics (`comparisons.csv`, column `metric`):
#
# * `accuracy` — the difference of mean test accuracy **among the seeds that learned**, with a
#   95 % Welch interval; *reproduced* when the interval lies on the paper's side of 0 (for the
#   two "≈" claims, SNL vs NL and GC vs NL: when the first model is at most 0.02 worse),
#   *reversed* when it lies on the other side, *not decidable* otherwise;
# * `learned_share` — the two shares of seeds that learned, Fisher's exact test (one-sided,
#   $p < 0.05$);
# * `steps_to_90` — the median steps to 90 % of the ceiling, an exact Mann-Whitney test on
#   ranks in which "never" ranks after every number of steps (one-sided, $p < 0.05$);
# * `accuracy_all` — the test accuracy of **every converged seed**, learned or not, the same
#   rank test (one-sided). On a graded task such as `digitgrid`, where a model reads 3 of 16
#   keys, no seed reaches the "learned" line and only this metric can tell two such models
#   apart; a rank test can refute a "≈" claim, never show it.

# %%
# NBVAL_CHECK_OUTPUT
for task in ("digitgrid", "digitkeys", "manykeys", "lookalike"):
    for metric in ("accuracy", "learned_share", "steps_to_90", "accuracy_all"):
        print(f"{task}, {metric}")
        print("\n".join(report.comparison_lines(comparisons, task=task, metric=metric)),
              end="\n\n")

# %% [markdown]
# The same, one paragraph per claim (generated from `comparisons.csv`):

# %%
# NBVAL_CHECK_OUTPUT
print("\n\n".join(line for task in ("digitgrid", "digitkeys", "manykeys", "lookalike")
                   for line in report.verdict_lines(comparisons, task=task)))

# %% [markdown]
# Does a task **separate converged models**? The bar: the best model's mean test accuracy at
# most 0.97 (not saturated), the baseline within 0.10 of chance, the block models' means
# spread by at least 0.10, at least 5 seeds (`bar_check`, every seed counted), and every run
# of the best and the worst block model **converged** (flat over its last quarter): a spread
# that comes from runs still rising at their maximum is a difference of speed.

# %%
# NBVAL_CHECK_OUTPUT
for task, level in (("digitgrid", 4), ("digitkeys", 6), ("manykeys", 2), ("lookalike", 8)):
    bar = bar_check(rows, task, level)
    print(f"{task}: best {bar['best']} {bar['means'][bar['best']]:.3f}, worst "
          f"{bar['worst']} {bar['means'][bar['worst']]:.3f}, baseline "
          f"{bar['baseline']:.3f} (chance {bar['chance']:.3f}), {bar['seeds']} seeds -> "
          + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in bar["checks"].items())
          + f"; bar met: {bar['met']}")

# %% [markdown]
# What each block costs, for our block in `layer3` ($C = 64$, $N = 64$), per image, and the
# whole model's FLOPs (the block's share of the network):

# %%
# NBVAL_CHECK_OUTPUT
first = {}
for r in rows:
    if r["task"] == "lookalike":
        first.setdefault(r["model"], r)
nl_cost = first["nl"]
print(f"{'model':<17}{'params':>8}{'kFLOPs':>9}{'vs NL':>7}{'model MFLOPs':>14}")
for model, r in first.items():
    share = int(r["block_flops"]) / int(nl_cost["block_flops"])
    print(f"{model:<17}{int(r['block_params']):>8}{int(r['block_flops']) / 1e3:>9.1f}"
          f"{share:>7.1%}{int(r['model_flops']) / 1e6:>14.2f}")

# %% [markdown]
# Where the blocks look: NL's attention for one query (the star, a right-half cell), SNL's and
# GC's single map (the same for every query), seed 0. A block that solved the task puts its
# weight on the key at the left end, not on the distractor digits or the bars:

# %%
display(Image(filename=str(RESULTS_DIR / "attention_blocks.png")))

# %% [markdown]
# ## 3. Where it converges, and how fast it gets there
#
# Read the paragraphs above claim by claim (`docs/experiments.md` discusses each next to the
# full tables). Three patterns to look for:
#
# * **Same place, different speed.** Two models whose learned seeds reach the same accuracy
#   can differ a lot in steps to the ceiling and in how many seeds get there within the
#   maximum. A fixed 200-step budget turns that difference in speed into a difference in
#   "accuracy" — which is what the old tables reported.
# * **A share is a proportion.** "3 of 5 seeds learned" against "5 of 5" is a proportion test
#   with five trials a side; Fisher's exact test cannot call that significant ($p \approx 0.22$).
#   Five seeds decide a share only when it is nearly all against nearly none.
# * **"Never" is data.** A seed that did not reach the level within the maximum is the slowest
#   seed, not a missing one: dropping it makes a model look faster than it is.
#
# * **A plateau can look like convergence.** On `manykeys` some runs sit for a thousand steps
#   at about 0.75 — what a model earns by carrying one of each row's two key columns — and
#   some leave it late. On `digitkeys` GC r16's seed 1 creeps from 0.66 to 0.68 between step
#   2,000 and its 4,000-step maximum: it looks finished, yet the flatness rule counts it as
#   still rising, and GC r4's seed 3, stuck near 0.51 at its maximum, reached 0.89 when
#   `scripts/long_runs.py` gave it 6,000 steps (`data/results/digitkeys_long.csv`). A
#   flat stretch under a decaying learning rate is not where a model converges. Read
#   `steps_to_90`, the capped runs and `keys read` before calling a plateau the end; the bar
#   check above says whether any task separated *converged* models at all.
# * **One context, many queries.** On `digitgrid` the bar is met: NL converges near the reading
#   ceiling on four seeds (about 12 of 16 keys), GC at about 2, and every NL and GC r16 curve
#   is flat; GC stays there with 8,000 steps. Sixteen keys, each wanted by different queries,
#   are more than GC's one context, squeezed through its bottleneck, carries, while NL's
#   per-query maps fetch one key each. SNL (one context, no bottleneck) reads about 4 keys at
#   2,400 steps — but that is a plateau: the long run in `data/results/digitgrid_long.csv`
#   climbs to about 10 keys by 8,000. Even on the task built to separate converged models,
#   part of the gap is speed.
#
# A verdict from a fixed short budget is a statement about speed of learning, which is worth
# knowing — a model that needs fewer steps is cheaper to train — but it is not the paper's claim.

# %% [markdown]
# ## 4. Mean ± standard deviation over seeds
#
# With $S$ seeds $a_1, \dots, a_S$ per model we report the mean and the *sample* standard
# deviation
#
# $$
# \bar a = \frac{1}{S} \sum_{s=1}^{S} a_s, \qquad
# s_a = \sqrt{\frac{1}{S-1} \sum_{s=1}^{S} (a_s - \bar a)^2}.
# $$
#
# **Exercise `exp.mean_std`.** `mean_std(acc)`: `acc (M, S)`, one row per model and one column
# per seed → `(means (M,), stds (M,))`.

# %%
def mean_std(acc):
    """Mean and sample standard deviation of each row (model) over its seeds."""
    # exercise exp.mean_std: reduce over the seeds; the sample standard deviation
    ### BEGIN SOLUTION
    return acc.mean(axis=1), acc.std(axis=1, ddof=1)
    ### END SOLUTION


# %%
check("exp.mean_std", mean_std)

# %% [markdown]
# Your function on `lookalike`, over every seed (a seed left at chance inflates the spread),
# beside the mean over the seeds that learned only (what the `accuracy` metric compares):

# %%
look = [r for r in rows if r["task"] == "lookalike"]
names = list(dict.fromkeys(r["model"] for r in look))
n_seeds = min(sum(r["model"] == n for r in look) for n in names)  # a cut run may lack seeds
matrix = np.array([[float(r["accuracy"]) for r in look if r["model"] == n][:n_seeds]
                   for n in names])
means, stds = mean_std(matrix)
for name, m, s in zip(names, means, stds):
    won = [float(r["accuracy"]) for r in look if r["model"] == name and r["learned"] == "True"]
    note = f"learned seeds: {np.mean(won):.3f} (n={len(won)})" if won else "no seed learned"
    print(f"{name:<12} all seeds {m:.3f} ± {s:.3f}   {note}")

# %% [markdown]
# ## 5. Is a difference more than seed noise?
#
# Welch's $t$ measures a difference of means in units of its standard error, each model keeping
# its own variance:
#
# $$
# t = \frac{\bar a - \bar b}{\sqrt{s_a^2 / S_a + s_b^2 / S_b}}.
# $$
#
# With 5 seeds each, $|t|$ must exceed about 2.8 for a two-sided 5 % test (4 degrees of
# freedom at worst); a $|t|$ of 1 or 2 is noise.
#
# **Exercise `exp.welch_t`.** `welch_t(a, b)`: two 1-D arrays of accuracies → a float.

# %%
def welch_t(a, b):
    """Welch's t statistic of two samples with unequal variances."""
    # exercise exp.welch_t: sample variances, each over its own number of seeds
    ### BEGIN SOLUTION
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return (a.mean() - b.mean()) / se
    ### END SOLUTION


# %%
check("exp.welch_t", welch_t)

# %% [markdown]
# The same quantities give a **95 % confidence interval** for the difference,
# $\bar a - \bar b \pm t_{\nu,\,0.975}\, se$ with Welch's degrees of freedom $\nu$
# (`analysis.welch_interval`; scipy: `ttest_ind(a, b, equal_var=False).confidence_interval()`).
# Check it on GC r16 against NL, over the seeds that learned:

# %%
def learned_acc(model):
    return np.array([float(r["accuracy"]) for r in look
                     if r["model"] == model and r["learned"] == "True"])


a, b = learned_acc("gc_r16"), learned_acc("nl")
if min(len(a), len(b)) >= 2:
    with warnings.catch_warnings():  # scipy warns when a sample has no spread
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    d, lo, hi = analysis.welch_interval(a, b)
    print(f"t = {welch_t(a, b):+.2f}   scipy CI [{ci.low:+.3f}, {ci.high:+.3f}]   "
          f"gclab {d:+.3f} [{lo:+.3f}, {hi:+.3f}]")
else:
    print("fewer than two learned seeds on a side: no interval")

# %% [markdown]
# ### What "not decidable" means
#
# An interval that contains 0 (or a $p$ above 0.05) says: *with these seeds and this task we
# cannot tell the two apart.* It is **not** evidence that they are equal — an interval of
# $[-0.15, +0.20]$ is compatible with a large gain either way. What narrows it: more seeds, a
# task whose outcome varies less from seed to seed, or a task built so that the mechanism in
# question decides the label. What must **not** be done: retune the task or the budget after
# seeing the verdict until it says "reproduced".

# %% [markdown]
# ## 6. Which claim do two sets of curves support?
#
# Two models, `a` and `b`, each with one validation curve per seed. Two questions:
#
# * **where it converges** — the mean over seeds of each curve's *last* evaluation; the two are
#   "the same" when they differ by at most 0.02, else the higher one wins;
# * **how fast it gets there** — per seed, the first step at which the curve reaches 90 % of the
#   way from chance to the higher of the two final means (`inf` if it never does), then the
#   **median** over seeds; the smaller wins, "same" on a tie.
#
# **Exercise `exp.which_claim`.** `which_claim(steps, a, b, chance)`: `steps (T,)`,
# `a (S_a, T)`, `b (S_b, T)`, a float → `(where, fast)`, each `'a'`, `'b'` or `'same'`.

# %%
def which_claim(steps, a, b, chance):
    """(where it converges, how fast it gets there): 'a', 'b' or 'same' for each."""
    # exercise exp.which_claim: read the end of each curve, then when each seed first
    # reaches the level; keep the seeds that never do
    ### BEGIN SOLUTION
    fa, fb = a[:, -1].mean(), b[:, -1].mean()
    where = "same" if abs(fa - fb) <= 0.02 else ("a" if fa > fb else "b")
    level = chance + 0.9 * (max(fa, fb) - chance)

    def median_steps(curves):
        hits = [np.nonzero(c >= level)[0] for c in curves]
        return np.median([steps[h[0]] if h.size else np.inf for h in hits])

    ta, tb = median_steps(a), median_steps(b)
    fast = "same" if ta == tb else ("a" if ta < tb else "b")
    return where, fast
    ### END SOLUTION


# %%
check("exp.which_claim", which_claim)

# %% [markdown]
# Now on the committed curves: GC r16 (`a`) against NL (`b`) on `lookalike`, then GC r16
# against GC r4. Before you run the cell, look at those panels of the curves figure and write
# down your answer. (A run that stopped early stays where it stopped: its curve is continued
# at its last value up to the longest run, which is what "converged" means here.)

# %%
steps = np.array(sorted({int(r["step"]) for r in curves if r["task"] == "lookalike"}))
for one, two in (("gc_r16", "nl"), ("gc_r16", "gc_r4")):
    a = report.curve_matrix(curves, "lookalike", one, steps)
    b = report.curve_matrix(curves, "lookalike", two, steps)
    print(f"{one} vs {two}:", which_claim(steps, a, b, 0.5))

# %% [markdown]
# `which_claim` *describes* these seeds; it is not a test. Compare its answers with the
# `steps_to_90` and `accuracy` rows of section 2: a difference in median steps that the rule
# reports can still be "not decidable" there, because five seeds a side may not tell it from
# seed noise.

# %% [markdown]
# ## 7. What each block costs, by hand
#
# `FlopCounterMode` counts 2 FLOPs per multiply-add of every matmul and convolution (not the
# softmax, norms or additions).
#
# **Exercise `exp.nl_flops`.** `nl_flops(channels, height, width)`: the FLOPs of one
# embedded-gaussian `NonLocal2d` (reduction 2, no sub-sampling) on a `(1, C, H, W)` input, by
# formula. The check runs `FlopCounterMode` on the real block.

# %%
def nl_flops(channels, height, width):
    """FLOPs of one NL block: four 1x1 convs at every position and two N x N matmuls."""
    # exercise exp.nl_flops: theta, phi, g, W_z and the two products with the attention
    ### BEGIN SOLUTION
    ci, n = channels // 2, height * width
    convs = 2 * n * (3 * channels * ci + ci * channels)
    attention = 2 * n * n * ci + 2 * n * n * ci
    return convs + attention
    ### END SOLUTION


# %%
check("exp.nl_flops", nl_flops)

# %% [markdown]
# **Exercise `exp.gc_flops`.** `gc_flops(channels, height, width, ratio)`: the FLOPs of one
# `GCBlock(C, ratio)` (add fusion) on `(1, C, H, W)`, by formula.

# %%
def gc_flops(channels, height, width, ratio):
    """FLOPs of one GC block: attention pooling over N positions, a bottleneck on one vector."""
    # exercise exp.gc_flops: context modelling touches N positions, the transform one vector
    ### BEGIN SOLUTION
    n, p = height * width, int(channels * ratio)
    pool = 2 * channels * n + 2 * channels * n
    transform = 2 * (channels * p + p * channels)
    return pool + transform
    ### END SOLUTION


# %%
check("exp.gc_flops", gc_flops)

# %% [markdown]
# Your formulas for our block in `layer3` ($C = 64$, a $4 \times 16$ map), against the cost
# table of section 2:

# %%
print(f"NL: {nl_flops(64, 4, 16):,} FLOPs   GC r16: {gc_flops(64, 4, 16, 1 / 16):,} FLOPs   "
      f"ratio {gc_flops(64, 4, 16, 1 / 16) / nl_flops(64, 4, 16):.1%}")

# %% [markdown]
# ## 8. Make the table yourself
#
# ```
# gclab reproduce                 # the committed plan; writes a new ./gclab-results
# gclab reproduce --quick         # ~1 min: a few models, 1 seed, short runs
# gclab reproduce --tasks manykeys --out /tmp/my_results   # one task of the plan
# gclab reproduce --seeds 8 --out /tmp/my_results
# ```
#
# `gclab reproduce` never overwrites the committed `data/results` unless you pass
# `--out data/results` (`--tasks T --merge` replaces only task T's runs there). Each run is
# bit-reproducible on the same machine and torch build (fixed seeds, deterministic algorithms,
# one thread per run). Things to try: more seeds (does a "not decidable" become decided, and
# which way?), `manykeys` at 16 key bits (`make_split("manykeys", ..., difficulty=4)`), or a
# fixed budget of 200 steps (`TrainConfig(max_steps=200)` without early stopping) — and see
# which verdicts turn into statements about speed.
