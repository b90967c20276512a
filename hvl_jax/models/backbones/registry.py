"""The backbone chooser: `model.backbone` names -> tower sizes, the vision tower, the CLIP model.

  clip            OpenAI CLIP ViT (Hugging Face checkpoints), `clip.CLIPVisionEncoder`
  eva02_clip_l14  EVA02-CLIP (open_clip/timm checkpoints), `eva02.EVA02VisionEncoder`
Both share CLIP's causal text tower (`clip.CLIPTextEncoder`).
"""
import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from hvl_jax.models.backbones.clip import (CLIPConfig, CLIPTextEncoder, CLIPVisionEncoder,
                                           TowerConfig)
from hvl_jax.models.backbones.eva02 import EVA02VisionEncoder
from hvl_jax.ops.layer_scan import Remat

BACKBONES = ('clip', 'eva02_clip_l14')


@dataclasses.dataclass(frozen=True)
class CLIPSource:
  """`model.clip`: the checkpoint and the sizes of its towers (CLIP ViT-B/16's by default).

  pretrained: a Hugging Face CLIP directory or hub name, an open_clip EVA02-CLIP one for
  model.backbone='eva02_clip_l14', or '' for a random CLIP of these sizes; tokenizer: for
  EVA02-CLIP, a directory or hub name holding CLIP's vocab.json and merges.txt.
  """
  pretrained: str = 'openai/clip-vit-base-patch16'
  tokenizer: str = ''
  vision_width: int = 768
  vision_layers: int = 12
  vision_heads: int = 12
  vision_mlp_dim: int = 3072
  patch_size: int = 16
  image_size: int = 224
  text_width: int = 512
  text_layers: int = 12
  text_heads: int = 8
  text_mlp_dim: int = 2048
  vocab_size: int = 49408
  context_length: int = 77
  projection_dim: int = 512


def clip_config(c: CLIPSource, backbone: str = 'clip') -> CLIPConfig:
  """The towers' sizes from `model.clip` and the `model.backbone` name."""
  if backbone not in BACKBONES:
    raise ValueError(f'model.backbone={backbone!r}: expected one of {", ".join(BACKBONES)}')
  if c.image_size % c.patch_size:
    raise ValueError(
        f'model.clip.image_size={c.image_size} is not divisible by model.clip.patch_size='
        f'{c.patch_size}')
  eva = backbone == 'eva02_clip_l14'
  return CLIPConfig(
      text=TowerConfig(width=c.text_width, layers=c.text_layers, heads=c.text_heads,
                       mlp_dim=c.text_mlp_dim, activation='gelu' if eva else 'quick_gelu'),
      vision=TowerConfig(width=c.vision_width, layers=c.vision_layers, heads=c.vision_heads,
                         mlp_dim=c.vision_mlp_dim, layer_norm_eps=1e-6 if eva else 1e-5,
                         activation='swiglu' if eva else 'quick_gelu'),
      projection_dim=c.projection_dim, vocab_size=c.vocab_size, context_length=c.context_length,
      patch_size=c.patch_size, image_size=c.image_size, vision_type='eva02' if eva else 'vit')


def vision_encoder(cfg: CLIPConfig, dtype=jnp.float32, remat: Remat = False,
                   attention_impl: str = 'auto', scan: bool = True):
  """The vision tower for `cfg.vision_type` (same call interface for both)."""
  kwargs = dict(cfg=cfg, dtype=dtype, remat=remat, attention_impl=attention_impl, scan=scan)
  if cfg.vision_type == 'eva02':
    return EVA02VisionEncoder(**kwargs)
  if cfg.vision_type != 'vit':
    raise ValueError(f"unknown vision_type={cfg.vision_type!r}: expected 'vit' or 'eva02'")
  return CLIPVisionEncoder(**kwargs)


class CLIPModel(nn.Module):
  """Both towers and CLIP's logit scale; param tree {text, vision, logit_scale}."""
  cfg: CLIPConfig
  dtype: Any = jnp.float32
  remat: Remat = False
  attention_impl: str = 'auto'
  scan: bool = True  # apply the layers with lax.scan (`layer_scan`); False unrolls them

  def setup(self):
    self.text = CLIPTextEncoder(cfg=self.cfg, dtype=self.dtype, remat=self.remat,
                                attention_impl=self.attention_impl, scan=self.scan)
    self.vision = vision_encoder(self.cfg, self.dtype, self.remat, self.attention_impl, self.scan)
    self.logit_scale = self.param('logit_scale', nn.initializers.constant(2.6592), ())

  def __call__(self, input_ids, images):
    return self.text(input_ids)['text_embeds'], self.vision(images)['image_embeds']

  def encode_text(self, input_ids=None, inputs_embeds=None, eos_index=None):
    return self.text(input_ids, inputs_embeds, eos_index)

  def encode_image(self, images, out_layers=(), dense=False):
    return self.vision(images, out_layers, dense)
