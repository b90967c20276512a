"""Matching: the jittable Hungarian solver against scipy, Hungarian matching over the present
classes, fixed matching of the class-level queries."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from hvl_jax.losses import matching


@pytest.mark.parametrize('shape', [(6, 6), (4, 9), (9, 4), (1, 5), (5, 1), (21, 100), (100, 21)])
def test_hungarian_matches_scipy(rng, shape):
  solve = jax.jit(matching.linear_sum_assignment)
  for trial in range(4):
    cost = rng.rand(*shape).astype(np.float32)
    if trial == 1:
      cost = rng.randint(0, 3, shape).astype(np.float32)     # many ties
    if trial == 2:
      cost[:] = 1.0                                           # all tied
    rows, cols = map(np.asarray, solve(jnp.asarray(cost)))
    ref_rows, ref_cols = scipy.optimize.linear_sum_assignment(cost)
    assert len(rows) == min(shape) and np.all(np.diff(rows) > 0)
    assert len(set(cols.tolist())) == len(cols)
    np.testing.assert_allclose(cost[rows, cols].sum(), cost[ref_rows, ref_cols].sum(), rtol=1e-6)


def test_hungarian_under_vmap(rng):
  costs = rng.rand(5, 4, 7).astype(np.float32)
  rows, cols = jax.jit(jax.vmap(matching.linear_sum_assignment))(jnp.asarray(costs))
  for c, r, k in zip(costs, np.asarray(rows), np.asarray(cols)):
    rr, kk = scipy.optimize.linear_sum_assignment(c)
    np.testing.assert_allclose(c[r, k].sum(), c[rr, kk].sum(), rtol=1e-6)


@pytest.mark.parametrize('queries,classes,present', [
    (6, 4, [[1, 0, 1, 0], [0, 0, 0, 1]]),
    (3, 7, [[1, 1, 0, 1, 0, 1, 0], [0] * 7]),        # more classes than queries (ADE20K)
    (2, 4, [[1, 1, 1, 1], [0, 1, 1, 0]]),            # more present classes than queries
])
def test_hungarian_matching_ignores_absent_classes(rng, queries, classes, present):
  present = np.asarray(present, bool)
  cost = rng.rand(len(present), queries, classes).astype(np.float32)
  target, has_mask = map(
      np.asarray,
      jax.jit(matching.hungarian_matching)(jnp.asarray(cost), jnp.asarray(present)))
  for b in range(len(present)):
    pres = np.flatnonzero(present[b])
    got = target[b][target[b] < classes]
    # One query per class, as many classes as the queries allow, only present ones.
    assert len(set(got.tolist())) == len(got) == min(len(pres), queries)
    assert set(got.tolist()) <= set(pres.tolist())
    if len(pres):
      rr, kk = scipy.optimize.linear_sum_assignment(cost[b][:, pres])
      total = sum(cost[b, q, target[b, q]] for q in range(queries) if target[b, q] < classes)
      np.testing.assert_allclose(total, cost[b][:, pres][rr, kk].sum(), rtol=1e-6)
  np.testing.assert_array_equal(has_mask, target < classes)


def test_hungarian_matching_is_optimal_at_ade20k_size(rng):
  # 100 queries, 150 classes: the old formulation (absent classes at a cost of 1e6) lost the
  # float32 precision of its potentials here and matched 38 of 40 such problems suboptimally.
  cost = rng.rand(2, 100, 150).astype(np.float32)
  present = np.zeros((2, 150), bool)
  present[0, rng.choice(150, 18, replace=False)] = True
  present[1, rng.choice(150, 5, replace=False)] = True
  target = np.asarray(
      jax.jit(matching.hungarian_matching)(jnp.asarray(cost), jnp.asarray(present))[0])
  for b in range(2):
    pres = np.flatnonzero(present[b])
    rr, kk = scipy.optimize.linear_sum_assignment(cost[b][:, pres])
    total = sum(cost[b, q, target[b, q]] for q in range(100) if target[b, q] < 150)
    np.testing.assert_allclose(total, cost[b][:, pres][rr, kk].sum(), rtol=1e-6)


def test_fixed_matching():
  present = jnp.asarray([[True, False, True]])
  target, has_mask = matching.fixed_matching(3, 2, present)
  np.testing.assert_array_equal(target, [[0, 3, 2, 0, 3, 2]])
  np.testing.assert_array_equal(has_mask, [[1, 0, 1, 1, 0, 1]])
