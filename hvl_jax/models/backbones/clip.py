"""Flax CLIP text and vision encoders with Hugging Face numerics.

The parameter names mirror `transformers.FlaxCLIPModel` so that HF checkpoints
(`flax_model.msgpack`, or PyTorch/Flax `model.safetensors`) load without
renaming layers. Differences from HF, all opt-in:
  * the text encoder takes token embeddings instead of ids (CoOp prompts);
  * the vision encoder takes any size divisible by the patch size (bicubic
    position-embedding resize) and returns dense taps and MaskCLIP features;
  * per-block rematerialisation and a compute dtype;
  * attention through `jax.nn.dot_product_attention` (cuDNN on GPU).
Weight import lives in `hvl_jax.models.backbones.clip_weights`.
"""
import dataclasses
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hvl_jax.ops.attention import dot_product_attention
from hvl_jax.ops.layer_scan import Remat, remat_layer, run_layers
from hvl_jax.ops.position import vit_tokens

# CLIP's image normalisation (RGB, images scaled to [0, 1] first).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclasses.dataclass(frozen=True)
class TowerConfig:
  """One transformer tower (text or vision) of CLIP."""
  width: int
  layers: int
  heads: int
  mlp_dim: int
  layer_norm_eps: float = 1e-5
  activation: str = 'quick_gelu'


@dataclasses.dataclass(frozen=True)
class CLIPConfig:
  """Sizes of a CLIP model; `from_hf` reads a HF `config.json` dict."""
  text: TowerConfig
  vision: TowerConfig
  projection_dim: int
  vocab_size: int = 49408
  context_length: int = 77
  patch_size: int = 16
  image_size: int = 224  # pre-training resolution: sets the position-embedding grid
  # HF semantics: 2 (legacy configs) pools at argmax(ids), since EOS has the largest id;
  # otherwise at the first occurrence of this id.
  eos_token_id: int = 2
  # 'vit' (CLIP) | 'eva02' (EVA02-CLIP): `registry.vision_encoder` picks the tower
  vision_type: str = 'vit'

  def to_hf(self, **text_extra) -> dict:
    """The HF `config.json` dict of these sizes (what `from_hf` reads back); `text_extra` adds
    text_config fields (e.g. bos_token_id, pad_token_id)."""
    tower = lambda t: dict(hidden_size=t.width, num_hidden_layers=t.layers, num_attention_heads=t.
                           heads, intermediate_size=t.mlp_dim, layer_norm_eps=t.layer_norm_eps,
                           hidden_act=t.activation, projection_dim=self.projection_dim)
    return dict(
        model_type='clip', architectures=['CLIPModel'], projection_dim=self.projection_dim,
        text_config=dict(tower(self.text), vocab_size=self.vocab_size,
                         max_position_embeddings=self.context_length,
                         eos_token_id=self.eos_token_id, **text_extra),
        vision_config=dict(tower(self.vision), patch_size=self.patch_size,
                           image_size=self.image_size))

  @classmethod
  def from_hf(cls, cfg: dict) -> 'CLIPConfig':
    arch = cfg.get('model_type', 'clip')
    if arch != 'clip':
      raise ValueError(f'unknown architecture model_type={arch!r} in config.json: expected "clip"')
    t, v = cfg.get('text_config', {}), cfg.get('vision_config', {})

    def tower(c, width, layers, heads, mlp):
      act = c.get('hidden_act', 'quick_gelu')
      if act not in ACTIVATIONS:
        raise ValueError(f'unsupported hidden_act={act!r}; supported: {sorted(ACTIVATIONS)}')
      return TowerConfig(width=c.get('hidden_size',
                                     width), layers=c.get('num_hidden_layers', layers),
                         heads=c.get('num_attention_heads',
                                     heads), mlp_dim=c.get('intermediate_size', mlp),
                         layer_norm_eps=c.get('layer_norm_eps',
                                              1e-5), activation=c.get('hidden_act', 'quick_gelu'))

    return cls(text=tower(t, 512, 12, 8, 2048), vision=tower(v, 768, 12, 12, 3072),
               projection_dim=cfg.get('projection_dim', 512), vocab_size=t.get('vocab_size', 49408),
               context_length=t.get('max_position_embeddings',
                                    77), patch_size=v.get('patch_size', 32),
               image_size=v.get('image_size', 224), eos_token_id=t.get('eos_token_id',
                                                                       49407))  # HF's default


ACTIVATIONS = {
    'quick_gelu': lambda x: x * jax.nn.sigmoid(1.702 * x),
    'gelu': lambda x: jax.nn.gelu(x, approximate=False),
    'gelu_new': lambda x: jax.nn.gelu(x, approximate=True),
}


class Attention(nn.Module):
  """CLIP self-attention with q/k/v/out projections (HF names)."""
  cfg: TowerConfig
  dtype: Any = jnp.float32
  causal: bool = False
  attention_impl: str = 'auto'

  def setup(self):
    dense = lambda name: nn.Dense(self.cfg.width, dtype=self.dtype, name=name)
    self.q_proj, self.k_proj, self.v_proj, self.out_proj = (
        dense('q_proj'), dense('k_proj'), dense('v_proj'), dense('out_proj'))

  def split_heads(self, x):
    return x.reshape(x.shape[:-1] + (self.cfg.heads, self.cfg.width // self.cfg.heads))

  def __call__(self, x):
    """x (B, T, D) -> (B, T, D)."""
    q, k, v = (self.split_heads(p(x)) for p in (self.q_proj, self.k_proj, self.v_proj))
    out = dot_product_attention(q, k, v, is_causal=self.causal, implementation=self.attention_impl)
    return self.out_proj(out.reshape(x.shape[:-1] + (self.cfg.width,)))

  def value_path(self, x):
    """MaskCLIP: v_proj then out_proj per token, no query-key mixing. x (B, T, D)."""
    return self.out_proj(self.v_proj(x))


class MLP(nn.Module):
  cfg: TowerConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = nn.Dense(self.cfg.mlp_dim, dtype=self.dtype, name='fc1')(x)
    x = ACTIVATIONS[self.cfg.activation](x)
    return nn.Dense(self.cfg.width, dtype=self.dtype, name='fc2')(x)


class EncoderLayer(nn.Module):
  """Pre-LN transformer block."""
  cfg: TowerConfig
  dtype: Any = jnp.float32
  causal: bool = False
  attention_impl: str = 'auto'

  def setup(self):
    eps = self.cfg.layer_norm_eps
    self.layer_norm1 = nn.LayerNorm(eps, dtype=self.dtype)
    self.self_attn = Attention(self.cfg, self.dtype, self.causal, self.attention_impl)
    self.layer_norm2 = nn.LayerNorm(eps, dtype=self.dtype)
    self.mlp = MLP(self.cfg, self.dtype)

  def __call__(self, x):
    x = x + self.self_attn(self.layer_norm1(x))
    return x + self.mlp(self.layer_norm2(x))

  def maskclip_value(self, x):
    """The last block's value path used for dense CLIP-space features."""
    return self.self_attn.value_path(self.layer_norm1(x))


class TowerModule(nn.Module):
  """Fields shared by the transformer stack modules."""
  cfg: TowerConfig
  dtype: Any = jnp.float32
  causal: bool = False
  remat: Remat = False
  attention_impl: str = 'auto'
  scan: bool = True  # apply the layers with lax.scan (`layer_scan`); False unrolls them


class LayerCollection(TowerModule):
  """`layers/{0..N-1}` as in HF; returns every hidden state."""

  def make_block(self, remat: Remat = False, **kw):
    return remat_layer(EncoderLayer, remat)(
        self.cfg, self.dtype, self.causal, self.attention_impl, **kw)

  def setup(self):
    self.blocks = [self.make_block(self.remat, name=str(i)) for i in range(self.cfg.layers)]

  def __call__(self, x, num_layers: Optional[int] = None):
    """x (B, T, D) -> list of hidden states: [input, after layer 1, ..., after layer n]."""
    return run_layers(self, self.blocks[:num_layers], self.make_block(parent=None), x, self.remat,
                      self.scan)

  def maskclip_value(self, x):
    return self.blocks[-1].maskclip_value(x)


class Encoder(TowerModule):
  """HF's `encoder` level of the parameter tree around the layer collection."""

  def setup(self):
    self.layers = LayerCollection(self.cfg, self.dtype, self.causal, self.remat,
                                  self.attention_impl, self.scan)

  def __call__(self, x, num_layers=None):
    return self.layers(x, num_layers)

  def maskclip_value(self, x):
    return self.layers.maskclip_value(x)


class TextEmbeddings(nn.Module):
  cfg: CLIPConfig
  dtype: Any = jnp.float32

  def setup(self):
    w = self.cfg.text.width
    self.token_embedding = nn.Embed(self.cfg.vocab_size, w, dtype=self.dtype)
    self.position_embedding = nn.Embed(self.cfg.context_length, w, dtype=self.dtype)

  def __call__(self, input_ids=None, inputs_embeds=None):
    if inputs_embeds is None:
      inputs_embeds = self.token_embedding(input_ids)
    length = inputs_embeds.shape[1]
    return inputs_embeds + self.position_embedding(jnp.arange(length))[None]


class TextTransformer(nn.Module):
  cfg: CLIPConfig
  dtype: Any = jnp.float32
  remat: Remat = False
  attention_impl: str = 'auto'
  scan: bool = True  # apply the layers with lax.scan (`layer_scan`); False unrolls them

  def setup(self):
    self.embeddings = TextEmbeddings(self.cfg, self.dtype)
    self.encoder = Encoder(self.cfg.text, self.dtype, True, self.remat, self.attention_impl,
                           self.scan)
    self.final_layer_norm = nn.LayerNorm(self.cfg.text.layer_norm_eps, dtype=self.dtype)

  def __call__(self, input_ids=None, inputs_embeds=None, eos_index=None):
    states = self.encoder(self.embeddings(input_ids, inputs_embeds))
    last = self.final_layer_norm(states[-1])
    if eos_index is None:
      eos_index = self.eos_position(input_ids)
    pooled = jnp.take_along_axis(last, eos_index[:, None, None], axis=1)[:, 0]
    return dict(hidden_states=states, last_hidden_state=last, pooled=pooled)

  def eos_position(self, input_ids):
    """(B, T) ids -> (B,) index of the pooled EOS token, as HF decides it."""
    return eos_positions(input_ids, self.cfg.eos_token_id, jnp)

  def token_embeddings(self, input_ids):
    """(B, T) ids -> (B, T, D) token embeddings (no position embedding)."""
    return self.embeddings.token_embedding(input_ids)


class CLIPTextEncoder(nn.Module):
  """Text tower + projection: `text_embeds` equals HF `get_text_features`.

  Call with `input_ids` (B, T) or with `inputs_embeds` (B, T, D_text) plus
  `eos_index` (B,), the position whose state is pooled.
  """
  cfg: CLIPConfig
  dtype: Any = jnp.float32
  remat: Remat = False
  attention_impl: str = 'auto'
  scan: bool = True  # apply the layers with lax.scan (`layer_scan`); False unrolls them

  def setup(self):
    self.text_model = TextTransformer(self.cfg, self.dtype, self.remat, self.attention_impl,
                                      self.scan)
    self.text_projection = nn.Dense(self.cfg.projection_dim, use_bias=False, dtype=self.dtype)

  def __call__(self, input_ids=None, inputs_embeds=None, eos_index=None):
    out = self.text_model(input_ids, inputs_embeds, eos_index)
    out['text_embeds'] = self.text_projection(out['pooled'])
    return out

  def token_embeddings(self, input_ids):
    return self.text_model.token_embeddings(input_ids)


class VisionEmbeddings(nn.Module):
  cfg: CLIPConfig
  dtype: Any = jnp.float32

  def setup(self):
    c = self.cfg
    w = c.vision.width
    self.class_embedding = self.param('class_embedding', nn.initializers.normal(w ** -0.5), (w,))
    self.patch_embedding = nn.Conv(w, (c.patch_size, c.patch_size), strides=c.patch_size,
                                   padding='VALID', use_bias=False, dtype=self.dtype)
    self.grid = (c.image_size // c.patch_size,) * 2
    self.position_embedding = nn.Embed(self.grid[0] * self.grid[1] + 1, w, dtype=self.dtype)

  def __call__(self, images):
    """images (B, H, W, 3) normalised -> tokens (B, 1 + h*w, D) and the grid (h, w)."""
    return vit_tokens(images, self.patch_embedding, self.class_embedding,
                      self.position_embedding.embedding, self.grid, self.cfg.patch_size, self.dtype)


class VisionTransformer(nn.Module):
  cfg: CLIPConfig
  dtype: Any = jnp.float32
  remat: Remat = False
  attention_impl: str = 'auto'
  scan: bool = True  # apply the layers with lax.scan (`layer_scan`); False unrolls them

  def setup(self):
    eps = self.cfg.vision.layer_norm_eps
    self.embeddings = VisionEmbeddings(self.cfg, self.dtype)
    self.pre_layrnorm = nn.LayerNorm(eps, dtype=self.dtype)  # sic: HF's name
    self.encoder = Encoder(self.cfg.vision, self.dtype, False, self.remat, self.attention_impl,
                           self.scan)
    self.post_layernorm = nn.LayerNorm(eps, dtype=self.dtype)

  def __call__(self, images, num_layers: Optional[int] = None):
    """images -> hidden states after the first `num_layers` blocks (all by default), the grid and,
    after all of them, the pooled class token."""
    x, grid = self.embeddings(images)
    states = self.encoder(self.pre_layrnorm(x), num_layers)
    out = dict(hidden_states=states, grid=grid)
    if len(states) == self.cfg.vision.layers + 1:
      out['pooled'] = self.post_layernorm(states[-1][:, 0])
    return out


class CLIPVisionEncoder(nn.Module):
  """Vision tower + projection.

  Returns a dict:
    image_embeds: (B, E) projected CLS, equal to HF `get_image_features` (only if `embeds`).
    hidden_states: list of (B, 1 + h*w, D), [embeddings after pre-LN, layer 1, ..., layer n].
    taps: {layer: (B, h, w, D)} patch-token maps after each layer in `out_layers` (1-based).
    dense: (B, h, w, E) MaskCLIP-path features in CLIP space (only if `dense=True`).
  Only the blocks these outputs read run (`blocks_needed`).
  """
  cfg: CLIPConfig
  dtype: Any = jnp.float32
  remat: Remat = False
  attention_impl: str = 'auto'
  scan: bool = True  # apply the layers with lax.scan (`layer_scan`); False unrolls them

  def setup(self):
    self.vision_model = VisionTransformer(self.cfg, self.dtype, self.remat, self.attention_impl,
                                          self.scan)
    self.visual_projection = nn.Dense(self.cfg.projection_dim, use_bias=False, dtype=self.dtype)

  def __call__(self, images, out_layers: Sequence[int] = (), dense: bool = False,
               embeds: bool = True):
    layers = self.cfg.vision.layers
    out = self.vision_model(images, blocks_needed(layers, out_layers, dense, embeds))
    states, (h, w) = out['hidden_states'], out['grid']
    b = images.shape[0]
    if embeds:
      out['image_embeds'] = self.visual_projection(out['pooled'])
    out['taps'] = {l: states[l][:, 1:].reshape(b, h, w, -1) for l in out_layers}
    if dense:
      out['dense'] = self.maskclip_dense(states[layers - 1]).reshape(b, h, w, -1)
    return out

  def maskclip_dense(self, penultimate):
    """(B, 1 + h*w, D) input of the last block -> (B, h*w, E) per-token CLIP-space features."""
    vm = self.vision_model
    v = vm.encoder.maskclip_value(penultimate[:, 1:])
    return self.visual_projection(vm.post_layernorm(v))


def blocks_needed(layers: int, out_layers: Sequence[int], dense: bool, embeds: bool) -> int:
  """How many of a vision tower's `layers` blocks run: all for the image embedding, all but the
  last for dense (MaskCLIP) features (they take the last block's input), else the deepest tap.
  XLA cannot drop the unread outputs of a block inside a scan over the layers, so the tower
  does not run it."""
  return max([layers if embeds else 0, layers - 1 if dense else 0, *out_layers])


def eos_positions(input_ids, eos_token_id: int, xp=np):
  """(B, T) ids -> (B,) index of the pooled EOS token, as HF decides it: legacy configs
  (eos_token_id 2) pool at the largest id, others at the first `eos_token_id`. `xp`: numpy or
  jax.numpy."""
  if eos_token_id == 2:
    return xp.argmax(input_ids, axis=-1)
  return xp.argmax(input_ids == eos_token_id, axis=-1)


def normalize_images(images_uint8: jax.Array) -> jax.Array:
  """(B, H, W, 3) uint8 RGB -> float32 normalised with CLIP's mean and std."""
  x = images_uint8.astype(jnp.float32) / 255.0
  return (x - jnp.asarray(CLIP_MEAN)) / jnp.asarray(CLIP_STD)
