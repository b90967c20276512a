"""Apply a stack of identical layers with `jax.lax.scan`, keeping per-layer parameter names.

Unrolled, a 12- or 24-layer tower is traced (and compiled) once per layer and per call
site; the full training step calls such towers a dozen times, and the compiler's work
grows with every copy. Scanning compiles one layer body instead. `nn.scan` would do that
too, but stores the parameters stacked under one name, which breaks the checkpoint
layouts the weight loaders produce (`layers/0`, `layers/1`, ...). Here the parameters
stay per layer and are stacked at call time (one copy of the tower's weights, negligible
next to the activations).
"""
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

# `jax.checkpoint_policies` a rematerialised layer may use: what its backward pass keeps from the
# forward pass instead of recomputing it. 'nothing_saveable' recomputes the whole layer (least
# memory); the 'dots' policies keep matmul outputs (without batch dimensions: the projections and
# MLPs; with them: also attention scores that XLA computes as batched matmuls).
REMAT_POLICIES = ('nothing_saveable', 'dots_with_no_batch_dims_saveable', 'dots_saveable')

# A module's `remat` field: 'none' (or False), a policy name, or True (= 'nothing_saveable').
Remat = Union[bool, str]


def check_remat(remat: Remat, field: str):
  """Raises naming the config `field` unless `remat` is 'none', a bool or one of REMAT_POLICIES."""
  if not isinstance(remat, bool) and remat != 'none' and remat not in REMAT_POLICIES:
    raise ValueError(f"{field} must be 'none' or one of {REMAT_POLICIES}, got {remat!r}")


def checkpoint_policy(remat: Remat) -> Optional[object]:
  """The `jax.checkpoint` policy for a `remat` field (None when remat is off)."""
  if not remat or remat == 'none':
    return None
  name = 'nothing_saveable' if remat is True else remat
  check_remat(name, 'remat')
  return getattr(jax.checkpoint_policies, name)


def remat_layer(layer_cls, remat: Remat, **kw):
  """`layer_cls` wrapped in `nn.remat` with the policy of `remat` (unchanged when remat is off)."""
  policy = checkpoint_policy(remat)
  return layer_cls if policy is None else nn.remat(layer_cls, policy=policy, **kw)


def scan_layers(module: nn.Module, layer_params: Sequence[dict], carry, remat: Remat, *args):
  """Runs `module` once per entry of `layer_params`, feeding each carry to the next.

  Args:
    module: an unbound module (`parent=None`), the same for every step; called as
      `module(carry, *args) -> (carry, output)`.
    layer_params: the steps' parameter trees, in order (identical structures).
    carry: the first step's input (any pytree, e.g. (B, T, D) tokens).
    remat: rematerialise each step in the backward pass (True or a policy name, see
      `checkpoint_policy`).
    *args: inputs shared by every step (e.g. rotary embeddings), not scanned.
  Returns:
    (final carry, every step's output stacked on a leading axis).
  """
  stacked = jax.tree.map(lambda *p: jnp.stack(p), *layer_params)

  def body(c, params):
    return module.apply({'params': params}, c, *args)

  policy = checkpoint_policy(remat)
  if policy is not None:
    body = jax.checkpoint(body, prevent_cse=False, policy=policy)
  return jax.lax.scan(body, carry, stacked)


class ScanStep(nn.Module):
  """A layer `x -> y` as a scan step `x -> (y, y)`."""
  layer: nn.Module

  def __call__(self, x, *args):
    y = self.layer(x, *args)
    return y, y


def scan_or_unroll(owner: nn.Module, scan: bool, steps: int, unrolled: Callable[[int, Any],
                                                                                Tuple[Any, Any]],
                   step: nn.Module, step_params: Callable[[dict, int], dict], carry, remat: Remat,
                   *args) -> Tuple[Any, List[Any]]:
  """`steps` repetitions of a layer (or of a group of layers) of `owner`, scanned or unrolled.

  Unrolled (while initialising, where the parameters are created, with `scan` False, or with
  fewer than 2 steps): `unrolled(i, carry) -> (carry, output)` for i = 0, 1, ...; it builds step
  i's bound submodules. Scanned: one `lax.scan` (`scan_layers`) of the unbound `step`
  (`parent=None`, called as `step(carry, *args) -> (carry, output)`) over the steps' parameter
  trees `step_params(owner's params, i)`. Returns (final carry, [output of each step]).
  """
  if owner.is_initializing() or not scan or steps < 2:
    outputs = []
    for i in range(steps):
      carry, out = unrolled(i, carry)
      outputs.append(out)
    return carry, outputs
  params = owner.variables['params']
  carry, stacked = scan_layers(step, [step_params(params, i) for i in range(steps)], carry, remat,
                               *args)
  return carry, [jax.tree.map(lambda x, i=i: x[i], stacked) for i in range(steps)]


def run_layers(owner: nn.Module, blocks: Sequence[nn.Module], layer: nn.Module, x: jax.Array,
               remat: Remat, scan: bool, *args):
  """Hidden states [x, after layer 1, ..., after layer n] of `blocks`, applied in order.

  Args:
    owner: the module holding the blocks; their parameters are `owner`'s children by name.
    blocks: the bound layers (setup-defined, named); used as they are while initialising.
    layer: the same layer unbound (`parent=None`), applied to each block's parameters.
    x: (B, T, D) input; remat: rematerialise each layer (`checkpoint_policy`); *args: shared
      by every layer.
    scan: False applies the bound blocks one after the other (unrolled).
  """
  def unrolled(i, h):
    h = blocks[i](h, *args)
    return h, h

  _, states = scan_or_unroll(owner, scan, len(blocks), unrolled, ScanStep(layer, parent=None),
                             lambda params, i: {'layer': params[blocks[i].name]}, x, remat, *args)
  return [x] + states
