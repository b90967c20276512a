"""CLIP weight import from Hugging Face checkpoints, and a ready-to-use CLIP object.

`load_clip(name_or_path)` reads a checkpoint directory (config.json plus
`flax_model.msgpack` or `model.safetensors`, PyTorch or Flax naming; no torch
needed), or a hub name through the local HF cache (or the hub when online).
`random_clip(cfg)` builds a randomly initialised CLIP of any size.
"""
import dataclasses
import json
import os
import re
import zlib
from typing import Any, Callable, Optional, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np

from hvl_jax.common import sharding
from hvl_jax.common.errors import CheckpointError
from hvl_jax.models.backbones.clip import CLIPConfig
from hvl_jax.models.backbones.registry import CLIPModel

WEIGHT_FILES = ('flax_model.msgpack', 'model.safetensors')


class HashTokenizer:
  """Tokenizer for randomly initialised CLIPs (no vocabulary file is needed).

  Words map to ids by a stable hash; SOS/EOS take the two largest ids so that
  EOS pooling by argmax works as for the real CLIP vocabulary.
  """

  def __init__(self, vocab_size: int, context_length: int):
    self.vocab_size, self.context_length = vocab_size, context_length
    self.sos_id, self.eos_id = vocab_size - 2, vocab_size - 1

  def word_ids(self, text: str):
    words = re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text.lower())
    return [zlib.crc32(w.encode()) % (self.vocab_size - 2) for w in words]

  def __call__(self, texts: Sequence[str]) -> np.ndarray:
    out = np.full((len(texts), self.context_length), self.eos_id, np.int32)
    for i, text in enumerate(texts):
      ids = [self.sos_id] + self.word_ids(text)[:self.context_length - 2] + [self.eos_id]
      out[i, :len(ids)] = ids
    return out


class HFTokenizer:
  """CLIP's BPE tokenizer from the checkpoint, padded to the context length."""

  def __init__(self, path: str, context_length: int):
    from transformers import CLIPTokenizer  # pylint: disable=g-import-not-at-top
    self.tok = CLIPTokenizer.from_pretrained(path)
    self.context_length = context_length
    self.sos_id, self.eos_id = self.tok.bos_token_id, self.tok.eos_token_id

  def word_ids(self, text: str):
    return self.tok(text, add_special_tokens=False)['input_ids']

  def __call__(self, texts: Sequence[str]) -> np.ndarray:
    enc = self.tok(list(texts), padding='max_length', truncation=True,
                   max_length=self.context_length, return_tensors='np')
    return enc['input_ids'].astype(np.int32)


@dataclasses.dataclass
class CLIP:
  """A CLIP model with its weights and tokenizer.

  Attributes:
    config: the sizes.
    params: {'text': ..., 'vision': ..., 'logit_scale': ...}.
    tokenizer: callable list[str] -> (N, context_length) int32 ids.
    dtype: compute dtype.
  """
  config: CLIPConfig
  params: Any
  tokenizer: Callable[[Sequence[str]], np.ndarray]
  dtype: Any = jnp.float32

  @property
  def module(self) -> CLIPModel:
    return CLIPModel(self.config, self.dtype)

  def tokenize(self, texts: Sequence[str]) -> np.ndarray:
    return self.tokenizer(texts)

  def encode_text(self, input_ids) -> jax.Array:
    """(N, T) ids -> (N, E) projected, unnormalised features (HF get_text_features)."""
    return self.module.apply({'params': self.params}, jnp.asarray(input_ids),
                             method=CLIPModel.encode_text)['text_embeds']

  def encode_image(self, images) -> jax.Array:
    """(B, H, W, 3) CLIP-normalised -> (B, E) projected features (HF get_image_features)."""
    return self.module.apply({'params': self.params}, jnp.asarray(images),
                             method=CLIPModel.encode_image)['image_embeds']

  @property
  def logit_scale(self) -> jax.Array:
    return jnp.exp(self.params['logit_scale'])


def init_params(cfg: CLIPConfig, rng: jax.Array):
  """Random CLIP parameters {'text', 'vision', 'logit_scale'}.

  `lazy_init` computes the initialisers only, not the forward pass (compiling the forward of a
  large tower just to initialise it took minutes on a GPU). Jitted, the initialisers are one
  program, which JAX's compilation cache keeps, instead of one compile per operation: the demo's
  network initialised in 26 s op by op and in 3.4 s from the cache, to the same bits.
  """
  ids = jax.ShapeDtypeStruct((1, cfg.context_length), jnp.int32)
  img = jax.ShapeDtypeStruct((1, cfg.image_size, cfg.image_size, 3), jnp.float32)
  return jax.jit(lambda key: CLIPModel(cfg).lazy_init(key, ids, img)['params'])(rng)


def random_clip(cfg: CLIPConfig, seed: int = 0, dtype=jnp.float32) -> CLIP:
  """A randomly initialised CLIP of any size with the hash tokenizer."""
  with sharding.on_host_cpu():
    params = init_params(cfg, jax.random.PRNGKey(seed))
  return CLIP(cfg, params,
              HashTokenizer(cfg.vocab_size, cfg.context_length), dtype)


# ---------------------------------------------------------------------------
# Reading checkpoints.

_LINEAR = re.compile(r'(q_proj|k_proj|v_proj|out_proj|fc1|fc2|text_projection|visual_projection)$')
_NORM = re.compile(r'(layer_norm1|layer_norm2|final_layer_norm|pre_layrnorm|post_layernorm)$')


def torch_to_flax_name(key: str, value: np.ndarray):
  """Maps one PyTorch-named CLIP tensor to its Flax path and layout (None to skip)."""
  parts = key.split('.')
  if parts[-1] == 'position_ids':
    return None
  leaf, owner = parts[-1], parts[-2] if len(parts) > 1 else ''
  if key == 'logit_scale' or leaf == 'class_embedding':
    return tuple(parts), value
  if leaf == 'weight' and owner == 'patch_embedding':
    return tuple(parts[:-1]) + ('kernel',), np.transpose(value, (2, 3, 1, 0))
  if leaf == 'weight' and owner in ('token_embedding', 'position_embedding'):
    return tuple(parts[:-1]) + ('embedding',), value
  if leaf == 'weight' and _NORM.search(owner):
    return tuple(parts[:-1]) + ('scale',), value
  if leaf == 'weight' and _LINEAR.search(owner):
    return tuple(parts[:-1]) + ('kernel',), value.T
  if leaf == 'bias':
    return tuple(parts), value
  raise CheckpointError(f'unexpected tensor {key!r} with shape {value.shape}')


def flax_to_torch_name(path, value: np.ndarray):
  """The inverse of `torch_to_flax_name`: a HF-Flax path and array -> PyTorch name and layout."""
  leaf, owner = path[-1], path[-2] if len(path) > 1 else ''
  stem = '.'.join(path[:-1])
  if leaf == 'kernel' and owner == 'patch_embedding':
    return f'{stem}.weight', np.transpose(value, (3, 2, 0, 1))
  if leaf == 'kernel':
    return f'{stem}.weight', value.T
  if leaf in ('embedding', 'scale'):
    return f'{stem}.weight', value
  return '.'.join(path), value


def save_clip(cfg: CLIPConfig, params, path: str, **text_config):
  """Writes a HF CLIP checkpoint directory: config.json and model.safetensors (PyTorch naming),
  loadable by `load_clip` and by `transformers.CLIPModel.from_pretrained`. `params` is our
  {'text', 'vision', 'logit_scale'} tree; `text_config` adds fields to the text config
  (bos_token_id, pad_token_id). Files are written to temporaries and renamed."""
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  os.makedirs(path, exist_ok=True)
  tensors = {}
  for ours, value in flax.traverse_util.flatten_dict(jax.device_get(params)).items():
    hf_path = ours if ours == ('logit_scale',) else ours[1:]     # drop our 'text'/'vision' level
    name, array = flax_to_torch_name(hf_path, np.asarray(value, np.float32))
    tensors[name] = np.array(array, order='C')     # (ascontiguousarray makes a scalar 1-D)
  weights, config = os.path.join(path, 'model.safetensors'), os.path.join(path, 'config.json')
  save_file(tensors, weights + '.tmp', metadata={'format': 'pt'})
  with open(config + '.tmp', 'w') as f:
    json.dump(cfg.to_hf(**text_config), f, indent=2, sort_keys=True)
  os.replace(weights + '.tmp', weights)
  os.replace(config + '.tmp', config)


def load_safetensors(path: str):
  """Every tensor of a .safetensors file as float32-or-native numpy arrays {name: array}."""
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  try:
    return load_file(path)
  except (TypeError, ValueError):  # bf16 tensors: numpy cannot hold them, ml_dtypes via flax can
    from safetensors.flax import load_file as load_flax  # pylint: disable=g-import-not-at-top
    return {k: np.asarray(v.astype(jnp.float32)) for k, v in load_flax(path).items()}
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointError(f'{path}: cannot read safetensors file ({e})') from e


def read_safetensors(path: str):
  """model.safetensors (PyTorch or Flax naming) -> flat {hf flax path tuple: array}."""
  tensors = load_safetensors(path)
  flax_named = any(k.endswith(('.kernel', '.scale', '.embedding')) for k in tensors)
  flat = {}
  for key, value in tensors.items():
    if flax_named:
      flat[tuple(key.split('.'))] = value
    else:
      mapped = torch_to_flax_name(key, value)
      if mapped is not None:
        flat[mapped[0]] = mapped[1]
  return flat


def read_msgpack(path: str):
  with open(path, 'rb') as f:
    data = f.read()
  try:
    tree = flax.serialization.msgpack_restore(data)
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointError(f'{path}: cannot decode Flax msgpack ({e})') from e
  return flax.traverse_util.flatten_dict(tree)


def regroup(flat_hf, expected, source: str):
  """HF-Flax flat names -> our {'text', 'vision', 'logit_scale'} tree, checked against `expected`.

  Raises CheckpointError naming `source` and the parameter on a missing tensor
  or a shape mismatch.
  """
  prefix = {'text_model': 'text', 'text_projection': 'text',
            'vision_model': 'vision', 'visual_projection': 'vision'}
  ours = {}
  for path, value in flat_hf.items():
    if path[0] == 'logit_scale':
      ours[('logit_scale',)] = value
    elif path[0] in prefix:
      ours[(prefix[path[0]],) + path] = value
  return check_params(ours, expected, source)


def check_params(ours, expected, source: str):
  """Flat {path: array} -> the tree of `expected` (shapes) in float32; CheckpointError naming
  `source` and the parameter on a missing tensor or a shape mismatch."""
  flat_expected = flax.traverse_util.flatten_dict(expected)
  out = {}
  for path, spec in flat_expected.items():
    name = '/'.join(path)
    if path not in ours:
      raise CheckpointError(f'{source}: missing parameter {name} (expected shape {spec.shape})')
    value = np.asarray(ours[path])
    if value.shape != spec.shape:
      raise CheckpointError(f'{source}: parameter {name} has shape {value.shape}, '
                            f'the model config asks for {spec.shape}')
    out[path] = jnp.asarray(value, jnp.float32)
  return flax.traverse_util.unflatten_dict(out)


# What a HF CLIP checkpoint directory needs from the hub; the tokenizer files alone.
HF_CLIP_FILES = ('config.json', '*.safetensors', 'flax_model.msgpack', 'vocab.json', 'merges.txt',
                 'tokenizer*', 'special_tokens_map.json')
TOKENIZER_FILES = ('vocab.json', 'merges.txt', 'tokenizer*', 'special_tokens_map.json')


def resolve_checkpoint_dir(name_or_path: str, allow_patterns: Sequence[str] = HF_CLIP_FILES,
                           what: str = 'checkpoint directory') -> str:
  """A local directory, or a hub name resolved through the HF cache / hub (only `allow_patterns`).

  `what` names the expected local path in the error for a missing one.
  """
  if os.path.isdir(name_or_path):
    return name_or_path
  if os.path.exists(name_or_path):
    raise CheckpointError(f'{name_or_path}: expected a checkpoint directory, found a file')
  if name_or_path.startswith(('/', '.')) or name_or_path.count('/') != 1:
    raise CheckpointError(f'{name_or_path}: no such {what}')
  from huggingface_hub import snapshot_download  # pylint: disable=g-import-not-at-top
  try:
    return snapshot_download(name_or_path, allow_patterns=list(allow_patterns))
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointError(
        f'{name_or_path}: not a local directory and not available from the HF cache or hub ({e}). '
        'Download it on a machine with network access and pass the directory.') from e


def expected_shapes(cfg: CLIPConfig):
  """The parameter tree of a CLIP of these sizes, as shapes only."""
  return jax.eval_shape(lambda: init_params(cfg, jax.random.PRNGKey(0)))


def load_clip(name_or_path: str, dtype=jnp.float32, context_length: Optional[int] = None) -> CLIP:
  """Loads a HF CLIP checkpoint (directory or hub name).

  Args:
    name_or_path: directory with config.json and flax_model.msgpack or model.safetensors,
      or a hub name such as 'openai/clip-vit-base-patch16'.
    dtype: compute dtype of the returned model (parameters stay float32).
    context_length: tokenizer padding length (defaults to the model's).
  """
  path = resolve_checkpoint_dir(name_or_path)
  config_file = os.path.join(path, 'config.json')
  if not os.path.exists(config_file):
    raise CheckpointError(f'{config_file}: missing (every HF checkpoint directory has one)')
  with open(config_file) as f:
    try:
      cfg = CLIPConfig.from_hf(json.load(f))
    except (json.JSONDecodeError, ValueError) as e:
      raise CheckpointError(f'{config_file}: {e}') from e
  present = [n for n in WEIGHT_FILES if os.path.exists(os.path.join(path, n))]
  if not present:
    raise CheckpointError(f'{path}: no weights file, expected one of {", ".join(WEIGHT_FILES)}')
  weights = os.path.join(path, present[0])
  flat = read_msgpack(weights) if weights.endswith('.msgpack') else read_safetensors(weights)
  params = regroup(flat, expected_shapes(cfg), weights)
  length = context_length or cfg.context_length
  if os.path.exists(os.path.join(path, 'vocab.json')):
    tokenizer = HFTokenizer(path, length)
  else:
    tokenizer = missing_tokenizer(path)
  return CLIP(cfg, params, tokenizer, dtype)


def missing_tokenizer(path):
  def tokenize(texts):
    raise CheckpointError(f'{path}: no tokenizer files (vocab.json, merges.txt) in the checkpoint')
  return tokenize
