"""Apply a stack of identical layers with `jax.lax.scan`, keeping per-layer parameter names.

Unrolled, a 12- or 24-layer tower is traced (and compiled) once per layer and per call
site; the full training step calls such towers a dozen times, and the compiler's work
grows with every copy. Scanning compiles one layer body instead. `nn.scan` would do that
too, but stores the parameters stacked under one name, which breaks the checkpoint
layouts the weight loaders produce (`layers/0`, `layers/1`, ...). Here the parameters
stay per layer and are stacked at call time (one copy of the tower's weights, negligible
next to the activations).
"""
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def scan_layers(module: nn.Module, layer_params: Sequence[dict], carry, remat: bool, *args):
  """Runs `module` once per entry of `layer_params`, feeding each carry to the next.

  Args:
    module: an unbound module (`parent=None`), the same for every step; called as
      `module(carry, *args) -> (carry, output)`.
    layer_params: the steps' parameter trees, in order (identical structures).
    carry: the first step's input (any pytree, e.g. (B, T, D) tokens).
    remat: rematerialise each step in the backward pass.
    *args: inputs shared by every step (e.g. rotary embeddings), not scanned.
  Returns:
    (final carry, every step's output stacked on a leading axis).
  """
  stacked = jax.tree.map(lambda *p: jnp.stack(p), *layer_params)

  def body(c, params):
    return module.apply({'params': params}, c, *args)

  if remat:
    body = jax.checkpoint(body, prevent_cse=False)
  return jax.lax.scan(body, carry, stacked)


class ScanStep(nn.Module):
  """A layer `x -> y` as a scan step `x -> (y, y)`."""
  layer: nn.Module

  def __call__(self, x, *args):
    y = self.layer(x, *args)
    return y, y


def run_layers(owner: nn.Module, blocks: Sequence[nn.Module], layer: nn.Module, x: jax.Array,
               remat: bool, scan: bool, *args):
  """Hidden states [x, after layer 1, ..., after layer n] of `blocks`, applied in order.

  Args:
    owner: the module holding the blocks; their parameters are `owner`'s children by name.
    blocks: the bound layers (setup-defined, named); used as they are while initialising.
    layer: the same layer unbound (`parent=None`), applied to each block's parameters.
    x: (B, T, D) input; remat: rematerialise each layer; *args: shared by every layer.
    scan: False applies the bound blocks one after the other (unrolled).
  """
  if owner.is_initializing() or not scan or len(blocks) < 2:
    states = [x]
    for block in blocks:
      states.append(block(states[-1], *args))
    return states
  params = owner.variables['params']
  _, outs = scan_layers(ScanStep(layer, parent=None), [{'layer': params[b.name]} for b in blocks], x,
                        remat, *args)
  return [x] + [outs[i] for i in range(len(blocks))]
