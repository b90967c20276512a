"""EVA02-CLIP weight import from open_clip and timm checkpoint files.

`load_eva02_clip(path)` reads an open_clip checkpoint of EVA02-CLIP (`open_clip_model.safetensors`
or `open_clip_pytorch_model.bin`, e.g. from the hub repository
`timm/eva02_large_patch14_clip_224.merged2b_s4b_b131k`): the vision tower under `visual.trunk.`
(timm's `Eva`), the text tower in open_clip's names (under `text.` for `CustomTextCLIP`) and
the logit scale. `load_eva02_vision(path)`
reads timm's vision-only `model.safetensors`. safetensors files need no torch; `.bin` files are
read with torch when it is installed.

Sizes come from `open_clip_config.json` beside the weights (open_clip's hub format) or, for a
bare file, from the EVA02-CLIP-L/14 preset; every tensor is checked against them. open_clip
ships no tokenizer files: the tokenizer (CLIP's BPE, the same vocabulary) is read from
`vocab.json`/`merges.txt` beside the weights or from `tokenizer`, any HF CLIP checkpoint.
"""
import json
import os
from typing import Dict, Optional

import jax.numpy as jnp
import numpy as np

from hvl_jax.common.errors import CheckpointError
from hvl_jax.models.backbones import clip_weights
from hvl_jax.models.backbones.clip import CLIPConfig, TowerConfig

OPEN_CLIP_FILES = ('open_clip_model.safetensors', 'open_clip_pytorch_model.bin')
TIMM_FILES = ('model.safetensors', 'pytorch_model.bin')
CONFIG_FILE = 'open_clip_config.json'
DEFAULT_TOKENIZER = 'openai/clip-vit-base-patch16'

# timm's EVA02-CLIP vision towers: width, depth, heads, patch size, pre-training image size.
VISION_PRESETS = {
    'eva02_large_patch14_clip_224': dict(width=1024, layers=24, heads=16, patch_size=14,
                                         image_size=224),
    'eva02_large_patch14_clip_336': dict(width=1024, layers=24, heads=16, patch_size=14,
                                         image_size=336),
    'eva02_base_patch16_clip_224': dict(width=768, layers=12, heads=12, patch_size=16,
                                        image_size=224),
}
SWIGLU_RATIO = 4 * 2 / 3
# open_clip's EVA02-L-14 model config.
EVA02_CLIP_L14 = dict(
    embed_dim=768,
    vision_cfg=dict(timm_model_name='eva02_large_patch14_clip_224', image_size=224),
    text_cfg=dict(context_length=77, vocab_size=49408, width=768, heads=12, layers=12))


def config_from_open_clip(model_cfg: dict, source: str) -> CLIPConfig:
  """CLIPConfig from open_clip's `model_cfg` (embed_dim, vision_cfg, text_cfg).

  vision_cfg names one of VISION_PRESETS by `timm_model_name`; keys width / layers / heads /
  mlp_ratio / patch_size / image_size override the preset (as for small test models).
  """
  v, t = model_cfg.get('vision_cfg', {}), model_cfg.get('text_cfg', {})
  name = v.get('timm_model_name')
  if name not in VISION_PRESETS:
    raise CheckpointError(
        f'{source}: vision_cfg.timm_model_name={name!r} is not an EVA02-CLIP tower '
        f'({", ".join(VISION_PRESETS)})')
  vis = {
      **VISION_PRESETS[name],
      **{k: v[k] for k in ('width', 'layers', 'heads', 'patch_size', 'image_size') if k in v}
  }
  if isinstance(vis['image_size'], (list, tuple)):
    vis['image_size'] = vis['image_size'][0]
  tw = t.get('width', 512)
  return CLIPConfig(
      text=TowerConfig(tw, t.get('layers', 12), t.get('heads',
                                                      8), int(tw * t.get('mlp_ratio', 4.0)),
                       activation='quick_gelu' if model_cfg.get('quick_gelu') else 'gelu'),
      vision=TowerConfig(vis['width'], vis['layers'], vis['heads'],
                         int(vis['width'] * v.get('mlp_ratio', SWIGLU_RATIO)), 1e-6,
                         'swiglu'), projection_dim=model_cfg.get('embed_dim', 512),
      vocab_size=t.get('vocab_size', 49408), context_length=t.get('context_length', 77),
      patch_size=vis['patch_size'], image_size=vis['image_size'],
      eos_token_id=t.get('vocab_size', 49408) - 1, vision_type='eva02')


# ---------------------------------------------------------------------------
# Tensor names.

_NORMS = ('norm', 'norm1', 'norm2')


def _dense(parts, value):
  return tuple(parts[:-1]) + ('kernel',), value.T


def timm_vision_name(key: str, value: np.ndarray):
  """One timm `Eva` tensor -> (path in our vision tree, array), None for buffers."""
  parts = key.split('.')
  leaf, owner = parts[-1], parts[-2] if len(parts) > 1 else ''
  if parts[0] == 'rope':
    return None
  if key in ('cls_token', 'pos_embed'):
    return (key,), value
  if key == 'patch_embed.proj.weight':
    return ('patch_embed', 'proj', 'kernel'), np.transpose(value, (2, 3, 1, 0))
  if leaf == 'bias':
    return tuple(parts), value
  if leaf == 'weight' and owner in _NORMS:
    return tuple(parts[:-1]) + ('scale',), value
  if leaf == 'weight' and value.ndim == 2:
    return _dense(parts, value)
  raise CheckpointError(f'unexpected vision tensor {key!r} with shape {value.shape}')


_TEXT_MODULES = {'ln_1': 'layer_norm1', 'ln_2': 'layer_norm2', 'c_fc': 'fc1', 'c_proj': 'fc2',
                 'out_proj': 'out_proj'}


def open_clip_text_name(key: str, value: np.ndarray):
  """One open_clip text tensor -> list of (path in our text tree, array); [] for buffers."""
  emb = ('text_model', 'embeddings')
  if key == 'token_embedding.weight':
    return [(emb + ('token_embedding', 'embedding'), value)]
  if key == 'positional_embedding':
    return [(emb + ('position_embedding', 'embedding'), value)]
  if key == 'text_projection':          # a (width, embed) matrix applied as x @ P
    return [(('text_projection', 'kernel'), value)]
  if key == 'text_projection.weight':   # open_clip's Linear variant
    return [(('text_projection', 'kernel'), value.T)]
  if key == 'attn_mask':
    return []
  parts = key.split('.')
  if parts[0] == 'ln_final':
    return [(('text_model', 'final_layer_norm', 'scale' if parts[1] == 'weight' else 'bias'), value)
           ]
  if parts[:2] != ['transformer', 'resblocks'] or len(parts) < 5:
    raise CheckpointError(f'unexpected text tensor {key!r} with shape {value.shape}')
  layer = ('text_model', 'encoder', 'layers', parts[2])
  if parts[3:] == ['attn', 'in_proj_weight']:
    return [(layer + ('self_attn', f'{n}_proj', 'kernel'), w.T)
            for n, w in zip('qkv', np.split(value, 3))]
  if parts[3:] == ['attn', 'in_proj_bias']:
    return [
        (layer + ('self_attn', f'{n}_proj', 'bias'), b) for n, b in zip('qkv', np.split(value, 3))
    ]
  module, leaf = parts[-2], parts[-1]
  if module not in _TEXT_MODULES:
    raise CheckpointError(f'unexpected text tensor {key!r} with shape {value.shape}')
  scope = ('self_attn',) if module == 'out_proj' else ('mlp',) if module in ('c_fc',
                                                                             'c_proj') else ()
  name = _TEXT_MODULES[module]
  if leaf == 'bias':
    return [(layer + scope + (name, 'bias'), value)]
  if module.startswith('ln'):
    return [(layer + (name, 'scale'), value)]
  return [(layer + scope + (name, 'kernel'), value.T)]


def open_clip_params(tensors: Dict[str, np.ndarray], source: str):
  """open_clip state dict -> flat {('vision'|'text'|'logit_scale', ...): array}."""
  flat = {}
  for key, value in tensors.items():
    value = np.asarray(value)
    try:
      if key.startswith('visual.trunk.'):
        mapped = timm_vision_name(key[len('visual.trunk.'):], value)
        if mapped is not None:
          flat[('vision',) + mapped[0]] = mapped[1]
      elif key == 'logit_scale':
        flat[('logit_scale',)] = value.reshape(())
      elif key.startswith('visual.'):
        raise CheckpointError(f'unexpected vision tensor {key!r}: expected an open_clip timm tower '
                              '(visual.trunk.*) of EVA02')
      else:  # CustomTextCLIP (EVA02's hub checkpoints) keeps the text tower under 'text.'
        name = key[len('text.'):] if key.startswith('text.') else key
        for path, v in open_clip_text_name(name, value):
          flat[('text',) + path] = v
    except CheckpointError as e:
      raise CheckpointError(f'{source}: {e}') from None
  return flat


# ---------------------------------------------------------------------------
# Files.

def read_tensors(path: str) -> Dict[str, np.ndarray]:
  """A .safetensors file (no torch needed) or a PyTorch .bin/.pt state dict (needs torch)."""
  if not os.path.isfile(path):
    raise CheckpointError(f'{path}: no such checkpoint file')
  if path.endswith('.safetensors'):
    return clip_weights.load_safetensors(path)
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise CheckpointError(f'{path}: reading PyTorch .bin files needs torch; install it or use the '
                          '.safetensors file of the same checkpoint') from None
  try:
    state = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointError(f'{path}: cannot read PyTorch checkpoint ({e})') from e
  state = state.get('state_dict', state)
  return {k: v.float().numpy() for k, v in state.items()}


def find_weights(name_or_path: str, names) -> str:
  """A weights file: the path itself, the first of `names` inside a directory, or from the hub."""
  if os.path.isfile(name_or_path):
    return name_or_path
  # from the hub: the first (safetensors) file only
  directory = clip_weights.resolve_checkpoint_dir(
      name_or_path, (CONFIG_FILE,) + clip_weights.TOKENIZER_FILES + (names[0],),
      what='checkpoint file or directory')
  for n in names:
    if os.path.exists(os.path.join(directory, n)):
      return os.path.join(directory, n)
  raise CheckpointError(f'{directory}: no weights file, expected one of {", ".join(names)}')


def read_config(weights: str) -> CLIPConfig:
  config_file = os.path.join(os.path.dirname(weights), CONFIG_FILE)
  if not os.path.exists(config_file):
    return config_from_open_clip(EVA02_CLIP_L14, weights)
  with open(config_file) as f:
    try:
      cfg = json.load(f)
    except json.JSONDecodeError as e:
      raise CheckpointError(f'{config_file}: {e}') from e
  return config_from_open_clip(cfg.get('model_cfg', cfg), config_file)


def load_tokenizer(weights: str, tokenizer: str, context_length: int):
  """CLIP BPE tokenizer from the weights' directory, else from `tokenizer` (dir or hub name)."""
  here = os.path.dirname(weights)
  if os.path.exists(os.path.join(here, 'vocab.json')):
    return clip_weights.HFTokenizer(here, context_length)
  if not tokenizer:
    return clip_weights.missing_tokenizer(here)
  return clip_weights.HFTokenizer(
      clip_weights.resolve_checkpoint_dir(tokenizer, clip_weights.TOKENIZER_FILES), context_length)


def load_eva02_clip(name_or_path: str, tokenizer: str = DEFAULT_TOKENIZER, dtype=jnp.float32,
                    context_length: Optional[int] = None) -> clip_weights.CLIP:
  """EVA02-CLIP from an open_clip checkpoint (file, directory or hub name) as a `CLIP`.

  Args:
    name_or_path: open_clip_model.safetensors / open_clip_pytorch_model.bin, a directory holding
      one (with open_clip_config.json for non-default sizes), or a hub repository name.
    tokenizer: where CLIP's vocab.json/merges.txt are when the checkpoint has none ('' = fail on
      use).
    dtype: compute dtype (parameters stay float32).
    context_length: tokenizer padding length (defaults to the model's).
  """
  weights = find_weights(name_or_path, OPEN_CLIP_FILES)
  cfg = read_config(weights)
  flat = open_clip_params(read_tensors(weights), weights)
  params = clip_weights.check_params(flat, clip_weights.expected_shapes(cfg), weights)
  tok = load_tokenizer(weights, tokenizer, context_length or cfg.context_length)
  return clip_weights.CLIP(cfg, params, tok, dtype)


def load_eva02_vision(name_or_path: str, cfg: Optional[CLIPConfig] = None):
  """(CLIPConfig, vision params) from timm's EVA02-CLIP vision checkpoint (model.safetensors).

  The vision tree is `CLIP.params['vision']` (that of `clip.vision_encoder(cfg)`).
  """
  weights = find_weights(name_or_path, TIMM_FILES)
  cfg = cfg or read_config(weights)
  flat = {}
  for key, value in read_tensors(weights).items():
    try:
      mapped = timm_vision_name(key, np.asarray(value))
    except CheckpointError as e:
      raise CheckpointError(f'{weights}: {e}') from None
    if mapped is not None:
      flat[mapped[0]] = mapped[1]
  return cfg, clip_weights.check_params(flat, clip_weights.expected_shapes(cfg)['vision'], weights)
