"""Simple feature pyramid (ViTDet) from ViT taps at stride 16 to strides 4, 8, 16, 32."""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp


def group_norm(dim: int, dtype, name=None):
  """GroupNorm(32) as in Mask2Former; fewer groups for widths below 32 (tiny test models)."""
  return nn.GroupNorm(num_groups=min(32, dim), dtype=dtype, name=name)


class SimpleFeaturePyramid(nn.Module):
  """Taps (B, h, w, C) of three backbone layers -> {4, 8, 16, 32: (B, H/s, W/s, dim)}.

  The first tap is upsampled 4x (two 2x2 transposed convs), the second 2x, the
  third is used as is and max-pooled 2x for stride 32; each then gets a 1x1
  conv + GroupNorm to `dim` channels.
  """
  dim: int = 256
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, taps: Sequence[Any]):
    t4, t8, t16 = taps
    c = t4.shape[-1]
    up = lambda x, ch, name: nn.ConvTranspose(ch, (2, 2), (2, 2), dtype=self.dtype, name=name)(x)
    x4 = up(nn.gelu(group_norm(c // 2, self.dtype, 'up4_norm')(up(t4, c // 2, 'up4_a'))), c // 4, 'up4_b')
    x8 = up(t8, c // 2, 'up8')
    x32 = nn.max_pool(t16, (2, 2), (2, 2))
    out = {}
    for stride, x in ((4, x4), (8, x8), (16, t16), (32, x32)):
      x = nn.Conv(self.dim, (1, 1), use_bias=False, dtype=self.dtype, name=f'proj{stride}')(x)
      out[stride] = group_norm(self.dim, self.dtype, f'norm{stride}')(x)
    return out
