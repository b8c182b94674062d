r"""Exercises of lesson 03, looking inside a trained Non-local block (topic ``inside.``).

.. math::

    d(u, v) = 1 - \frac{u^\top v}{\lVert u\rVert\,\lVert v\rVert}, \qquad
    \bar d = \frac{1}{N(N-1)} \sum_{i \ne j} d(v_i, v_j)

References run ``gclab.experiments.analysis`` (PyTorch, float64) or plain indexing.
"""

from __future__ import annotations

import numpy as np

from gclab.exercises.lessons.common import rows_sum_to_one, softmax, tensor64
from gclab.exercises.registry import Case, Exercise, Property, register
from gclab.experiments import analysis

NOTEBOOK = "03_looking_inside_nl"


# --------------------------------------------------------------------------- references
def ref_cosine_distance(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """1 - cos(u, v) along the last axis: (..., D), (..., D) -> (...)."""
    return analysis.cosine_distance(tensor64(u), tensor64(v)).numpy()


def ref_mean_pairwise_distance(vectors: np.ndarray) -> np.ndarray:
    """Mean cosine distance over ordered pairs i != j of the N vectors: (B, N, D) -> (B,)."""
    return analysis.mean_pairwise_cosine_distance(tensor64(vectors)).numpy()


def ref_query_map(attention: np.ndarray, row: int, col: int, height: int, width: int
                  ) -> np.ndarray:
    """The keys' weights of query (row, col) as a map: (B, N, N) -> (B, height, width)."""
    a = np.asarray(attention)
    return a[:, row * width + col, :].reshape(a.shape[0], height, width)


def ref_mean_map(attention: np.ndarray) -> np.ndarray:
    """The average attention map over all queries: (B, N, N') -> (B, N')."""
    return np.asarray(attention).mean(axis=1)


# --------------------------------------------------------------------------- mistakes
def wrong_cos_similarity(u, v):
    u, v = np.asarray(u), np.asarray(v)
    return (u * v).sum(-1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1))


def wrong_cos_unnormalised(u, v):
    return 1.0 - (np.asarray(u) * np.asarray(v)).sum(-1)


def wrong_cos_one_norm(u, v):
    u, v = np.asarray(u), np.asarray(v)
    return 1.0 - (u * v).sum(-1) / np.linalg.norm(u, axis=-1) ** 2


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def wrong_pairs_with_diagonal(vectors):
    u = _unit(np.asarray(vectors))
    cos = u @ u.transpose(0, 2, 1)
    return 1.0 - cos.mean(axis=(1, 2))


def wrong_pairs_over_channels(vectors):
    return ref_mean_pairwise_distance(np.asarray(vectors).transpose(0, 2, 1))


def wrong_pairs_one_image(vectors):
    """Pools all images' positions together: one number for the whole batch, repeated."""
    v = np.asarray(vectors)
    allv = v.reshape(1, -1, v.shape[-1])
    return np.repeat(ref_mean_pairwise_distance(allv), v.shape[0])


def wrong_query_column(attention, row, col, height, width):
    a = np.asarray(attention)
    return a[:, :, row * width + col].reshape(a.shape[0], height, width)


def wrong_query_row_major_h(attention, row, col, height, width):
    a = np.asarray(attention)
    return a[:, col * height + row, :].reshape(a.shape[0], height, width)


def wrong_query_transposed_reshape(attention, row, col, height, width):
    a = np.asarray(attention)
    return a[:, row * width + col, :].reshape(a.shape[0], width, height).transpose(0, 2, 1)


def wrong_mean_over_keys(attention):
    return np.asarray(attention).mean(axis=2)  # (B, N): 1/N' everywhere for softmax rows


def wrong_mean_sum(attention):
    return np.asarray(attention).sum(axis=1)


def wrong_mean_first_query(attention):
    return np.asarray(attention)[:, 0, :]


# --------------------------------------------------------------------------- cases
def cases_cosine(rng):
    out = []
    for shape in ((5, 3), (2, 4, 6), (7,)):
        u = rng.standard_normal(shape) * 3.0
        v = rng.standard_normal(shape) + 0.5
        out.append(Case(args=(u, v), label=f"u, v {shape}"))
    return out


def cases_pairwise(rng):
    out = []
    for b, n, d in ((2, 5, 3), (3, 4, 7), (1, 6, 2)):
        out.append(Case(args=(rng.standard_normal((b, n, d)) + 0.3,), label=f"({b}, {n}, {d})"))
    return out


def cases_query_map(rng):
    out = []
    for b, h, w, (r, c) in ((2, 3, 5, (1, 3)), (1, 4, 2, (3, 0)), (2, 2, 6, (0, 5))):
        att = softmax(2.0 * rng.standard_normal((b, h * w, h * w)))
        out.append(Case(args=(att, r, c, h, w), label=f"{h}x{w} map, query ({r}, {c})"))
    return out


def cases_mean_map(rng):
    out = []
    # keys sub-sampled (N' = N/4, N/2): dividing by N' instead of N is 4x or 2x off there
    for b, n, n2 in ((2, 6, 6), (3, 8, 8), (1, 12, 12), (2, 12, 3), (1, 8, 4)):
        att = softmax(2.0 * rng.standard_normal((b, n, n2)))
        out.append(Case(args=(att,), label=f"attention ({b}, {n}, {n2})"))
    return out


# --------------------------------------------------------------------------- properties
def _in_range(out, *args, **kw):
    o = np.asarray(out)
    return bool(np.all(o > -1e-9) and np.all(o < 2 + 1e-9))


def _map_sums_to_one(out, *args, **kw):
    return bool(np.allclose(np.asarray(out).sum(axis=(1, 2)), 1.0))


# --------------------------------------------------------------------------- registry
register(Exercise(
    id="inside.cosine_distance",
    notebook=NOTEBOOK,
    title="Cosine distance 1 - cos(u, v) along the last axis",
    kind="function",
    reference=ref_cosine_distance,
    cases=cases_cosine,
    rtol=1e-7,
    mistakes={
        "returned the cosine similarity, not the distance 1 - cos": wrong_cos_similarity,
        "forgot to divide by the norms (1 - u.v)": wrong_cos_unnormalised,
        "divided by |u|^2 instead of |u| |v|": wrong_cos_one_norm,
    },
    properties=[Property("distances lie in [0, 2]", _in_range)],
    hints=(
        "The cosine of the angle between u and v is their dot product divided by the product of "
        "their lengths; the distance is 1 minus that.",
        "u, v (..., D): the dot product sums over the last axis, giving (...); each length "
        "(Euclidean norm over the last axis) is (...) too.",
        "the dot product of u and v over the last axis\ndivided by the length of u times the "
        "length of v\none minus that",
    ),
))

register(Exercise(
    id="inside.pairwise_distance",
    notebook=NOTEBOOK,
    title="Mean cosine distance between the N positions of each image (pairs i != j)",
    kind="function",
    reference=ref_mean_pairwise_distance,
    cases=cases_pairwise,
    rtol=1e-7,
    mistakes={
        "included the pairs i = j (distance 0) in the mean": wrong_pairs_with_diagonal,
        "compared the D channels instead of the N positions (axes swapped)":
            wrong_pairs_over_channels,
        "pooled the positions of all images together instead of per image":
            wrong_pairs_one_image,
    },
    properties=[Property("one distance per image, in [0, 2]", _in_range)],
    hints=(
        "Normalise every position's vector to length 1; then every cosine is a dot product, and "
        "all N x N of them come from one matrix product per image.",
        "vectors (B, N, D) -> unit vectors (B, N, D) -> all cosines (B, N, N) from the unit "
        "vectors times their transpose; there are N (N - 1) ordered pairs with i != j.",
        "divide every vector by its length (keep the axis so it broadcasts)\nall cosines: a "
        "batched product of the unit vectors with their own transpose\nper image: the total of "
        "the cosines minus the diagonal (the self-pairs)\none minus their mean over the N (N - 1) "
        "pairs",
    ),
))

register(Exercise(
    id="inside.query_map",
    notebook=NOTEBOOK,
    title="The attention map of one query position, as an image",
    kind="function",
    reference=ref_query_map,
    cases=cases_query_map,
    rtol=1e-12,
    mistakes={
        "took a column (how much every query attends to this key) instead of the query's row":
            wrong_query_column,
        "flattened the query as col * height + row (column-major) instead of row * width + col":
            wrong_query_row_major_h,
        "reshaped to (width, height) and transposed instead of reshaping to (height, width)":
            wrong_query_transposed_reshape,
    },
    properties=[Property("each map sums to 1 (a softmax row)", _map_sums_to_one)],
    hints=(
        "Row i of the attention holds the weights that query i gives to every key; the N "
        "positions were flattened row by row (C order) from the (height, width) map.",
        "attention (B, N, N) with N the number of pixels; a query's flat index counts whole rows "
        "above it, then columns; its row of attention is (B, N) and folds back to (B, height, "
        "width).",
        "the flat index of (row, col): whole rows before it times the width, plus the "
        "column\ntake that row of every image's attention matrix\nfold it back into a (height, "
        "width) grid per image",
    ),
))

register(Exercise(
    id="inside.mean_map",
    notebook=NOTEBOOK,
    title="One map for all queries: average the attention rows",
    kind="function",
    reference=ref_mean_map,
    cases=cases_mean_map,
    rtol=1e-10,
    mistakes={
        "summed the rows instead of averaging them (the map no longer sums to 1)":
            wrong_mean_sum,
        "averaged over the keys (axis 2) instead of over the queries (axis 1)":
            wrong_mean_over_keys,
        "kept the first query's row instead of the average over queries":
            wrong_mean_first_query,
    },
    properties=[Property("the mean map sums to 1", rows_sum_to_one)],
    hints=(
        "If every query attends the same way, one map is enough: the average of the N rows, which "
        "is still a probability distribution over the keys.",
        "attention (B, N, N') -> average over axis 1 (the queries) -> (B, N').",
        "return the mean of the attention over its query axis",
    ),
))
