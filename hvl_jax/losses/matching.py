"""Query-to-target matching: jittable Hungarian assignment, fixed + Hungarian matching.

`linear_sum_assignment` solves the rectangular assignment problem with the
shortest-augmenting-path (Jonker-Volgenant style) Hungarian algorithm in
`lax` loops, so it runs on device, under `jit` and under `vmap`.
"""
import jax
import jax.numpy as jnp


def _assign_rows(cost, num_rows=None):
  """Hungarian for n <= m: returns (n,) column of each row. cost (n, m) float32.

  num_rows: assign only the first num_rows rows (may be traced; the loop then runs that many
  times, not n); the others get column -1.
  """
  n, m = cost.shape
  big = jnp.asarray(jnp.finfo(jnp.float32).max / 4, jnp.float32)
  # 1-based arrays with a dummy column 0 (classic formulation with potentials u, v).
  a = jnp.zeros((n + 1, m + 1), jnp.float32).at[1:, 1:].set(cost.astype(jnp.float32))

  def add_row(i, state):
    u, v, p, way = state
    p = p.at[0].set(i)
    minv = jnp.full((m + 1,), big)
    used = jnp.zeros((m + 1,), bool)

    def search_cond(c):
      _, _, p, _, _, _, j0 = c
      return p[j0] != 0

    def search_step(c):
      u, v, p, way, minv, used, j0 = c
      used = used.at[j0].set(True)
      i0 = p[j0]
      cur = a[i0] - u[i0] - v
      free = ~used
      better = free & (cur < minv)
      minv = jnp.where(better, cur, minv)
      way = jnp.where(better, j0, way)
      masked = jnp.where(free, minv, big)
      j1 = jnp.argmin(masked.at[0].set(big))
      delta = masked.at[0].set(big)[j1]
      u = u.at[p].add(jnp.where(used, delta, 0.0))
      v = v - jnp.where(used, delta, 0.0)
      minv = jnp.where(used, minv, minv - delta)
      return u, v, p, way, minv, used, j1

    # The first step always runs (p[0] = i != 0).
    u, v, p, way, minv, used, j0 = jax.lax.while_loop(
        search_cond, search_step, (u, v, p, way, minv, used, jnp.int32(0)))

    def unwind(c):
      p, j0 = c
      j1 = way[j0]
      return p.at[j0].set(p[j1]), j1

    p, _ = jax.lax.while_loop(lambda c: c[1] != 0, unwind, (p, j0))
    return u, v, p, way

  init = (jnp.zeros((n + 1,), jnp.float32), jnp.zeros((m + 1,), jnp.float32),
          jnp.zeros((m + 1,), jnp.int32), jnp.zeros((m + 1,), jnp.int32))
  last = n if num_rows is None else jnp.minimum(num_rows, n)
  _, (_, _, p, _) = jax.lax.while_loop(lambda c: c[0] <= last, lambda c: (c[0] + 1, add_row(*c)),
                                       (jnp.int32(1), init))
  # p[j] = row assigned to column j (1-based, 0 = none) -> column of each row.
  cols = jnp.full((n + 1,), -1, jnp.int32).at[p[1:]].set(jnp.arange(m, dtype=jnp.int32))
  return cols[1:]


def linear_sum_assignment(cost):
  """Minimum-cost assignment of a 2-D cost matrix, like `scipy.optimize.linear_sum_assignment`.

  Args:
    cost: (n, m) finite costs, either orientation.
  Returns:
    (row_ind, col_ind), each (min(n, m),) int32, row_ind ascending.
  """
  n, m = cost.shape
  if n <= m:
    return jnp.arange(n, dtype=jnp.int32), _assign_rows(cost)
  rows = _assign_rows(cost.T)           # row of each column
  order = jnp.argsort(rows)
  return rows[order], jnp.arange(m, dtype=jnp.int32)[order]


def fixed_matching(num_classes: int, num_levels: int, present):
  """Targets of the class-level queries: query (l, k) is fixed to class k.

  Args:
    present: (B, K) bool, classes present in each image.
  Returns:
    target_class: (B, L*K) int32 class id, or K (no-object) where absent.
    has_mask: (B, L*K) bool, whether the query gets a mask loss.
  """
  classes = jnp.tile(jnp.arange(num_classes, dtype=jnp.int32), num_levels)   # level-major (l, k)
  has_mask = jnp.tile(present, (1, num_levels))
  return jnp.where(has_mask, classes[None], num_classes), has_mask


def hungarian_matching(cost, present):
  """Instance queries to present classes, one query per class at most.

  Only the present classes are assigned (absent ones cost nothing, whatever K): rows are the
  classes, present first, against the M queries and K dummy columns, which take the classes
  left over when more are present than there are queries. A dummy costs 1 more than the
  dearest entry, so every query that can be matched is (moving a class from a dummy to a free
  query lowers the total), and the potentials keep the costs' scale (a fixed 1e6 for absent
  classes cost float32 the precision to tell nearby costs apart).

  Args:
    cost: (B, M, K) matching cost of query m against class k.
    present: (B, K) bool.
  Returns:
    target_class: (B, M) int32 matched class or K (no-object).
    has_mask: (B, M) bool.
  """
  _, m, k = cost.shape

  def one(c, pres):
    order = jnp.argsort(~pres, stable=True)                 # present classes first
    rows = jnp.concatenate([c.T[order], jnp.full((k, k), c.max() + 1.0)], axis=1)
    count = pres.sum()
    cols = _assign_rows(rows, count)                        # (K,), -1 past the present ones
    query = jnp.where((jnp.arange(k) < count) & (cols < m), cols, m)   # dummies and absent: none
    return jnp.full((m,), k, jnp.int32).at[query].set(order.astype(jnp.int32), mode='drop')

  target = jax.vmap(one)(jax.lax.stop_gradient(cost).astype(jnp.float32), present)
  return target, target < k
