"""EVA02-CLIP: parity with open_clip/timm (CPU torch) and the weight import's errors."""
import functools
import json
import os
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import write_tiny_tokenizer
from hvl_jax.common.errors import CheckpointError
from hvl_jax.models.backbones import eva02
from hvl_jax.models.backbones.eva02_weights import load_eva02_clip, load_eva02_vision

torch = pytest.importorskip('torch')
open_clip = pytest.importorskip('open_clip')
timm = pytest.importorskip('timm')

IMAGE = 56   # 4x4 tokens of patch 14
VISION = dict(width=32, layers=3, heads=4, patch_size=14, image_size=IMAGE)


def tiny_open_clip(vocab: int):
  """open_clip's EVA02-CLIP (timm `eva02_large_patch14_clip_224` tower), shrunk."""
  model_cfg = dict(
      embed_dim=24,
      vision_cfg=dict(timm_model_name='eva02_large_patch14_clip_224', timm_model_pretrained=False,
                      timm_pool='token', timm_proj=None, image_size=IMAGE),
      text_cfg=dict(context_length=16, vocab_size=vocab, width=32, heads=4, layers=2),
      custom_text=True)
  # open_clip builds the timm tower by name only; the tiny sizes go through timm.create_model.
  small = functools.partial(timm.create_model, embed_dim=VISION['width'], depth=VISION['layers'],
                            num_heads=VISION['heads'], img_size=IMAGE, ref_feat_shape=(4, 4))
  torch.manual_seed(0)
  with mock.patch('open_clip.timm_model.timm.create_model', small):
    model = open_clip.CustomTextCLIP(
        **{k: v for k, v in model_cfg.items() if k != 'custom_text'}).eval()
  with torch.no_grad():  # non-trivial values everywhere (biases and norms start at 0/1)
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  model_cfg['vision_cfg'].update(VISION)
  return model, model_cfg


@pytest.fixture(scope='module')
def open_clip_checkpoint(tmp_path_factory):
  """(directory with open_clip_model.safetensors + open_clip_config.json + tokenizer, model)."""
  from safetensors.torch import save_file
  path = str(tmp_path_factory.mktemp('eva02'))
  vocab = write_tiny_tokenizer(path)
  model, model_cfg = tiny_open_clip(vocab)
  state = {k: v.contiguous() for k, v in model.state_dict().items()}
  save_file(state, os.path.join(path, 'open_clip_model.safetensors'))
  torch.save(state, os.path.join(path, 'open_clip_pytorch_model.bin'))
  with open(os.path.join(path, 'open_clip_config.json'), 'w') as f:
    json.dump(dict(model_cfg=model_cfg), f)
  return path, model


def test_rope_tables_match_timm():
  """Rescaled grids (fine-tuning at another size) included: 5x3 tokens on a 4x4 reference."""
  from timm.layers.pos_embed_sincos import RotaryEmbeddingCat
  rope = RotaryEmbeddingCat(dim=16, in_pixels=False, feat_shape=None, ref_feat_shape=(4, 4))
  ref = rope.get_embed(shape=(5, 3)).numpy()
  sin, cos = eva02.rope_tables((5, 3), (4, 4), 16)
  np.testing.assert_allclose(np.concatenate([sin, cos], -1), ref, atol=1e-6)


def test_image_and_text_features_match_open_clip(open_clip_checkpoint):
  path, ref = open_clip_checkpoint
  clip = load_eva02_clip(path)
  images = np.random.RandomState(0).randn(2, IMAGE, IMAGE, 3).astype(np.float32)
  ids = clip.tokenize(['a disk.', 'stripes, square'])
  with torch.no_grad():
    want_img = ref.encode_image(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    want_txt = ref.encode_text(torch.from_numpy(ids.astype(np.int64))).numpy()
  np.testing.assert_allclose(np.asarray(clip.encode_image(images)), want_img, atol=1e-4)
  np.testing.assert_allclose(np.asarray(clip.encode_text(ids)), want_txt, atol=1e-4)
  np.testing.assert_allclose(float(clip.params['logit_scale']), ref.logit_scale.item(), rtol=1e-6)


def test_dense_taps_match_timm_intermediates(open_clip_checkpoint):
  """Patch-token taps after each block equal timm's hidden states; MaskCLIP features have E dims."""
  path, ref = open_clip_checkpoint
  clip = load_eva02_clip(path)
  images = np.random.RandomState(1).randn(1, IMAGE, IMAGE, 3).astype(np.float32)
  out = clip.module.apply({'params': clip.params}, jnp.asarray(images), (1, 3), True,
                          method=type(clip.module).encode_image)
  trunk = ref.visual.trunk
  with torch.no_grad():
    x, rope = trunk._pos_embed(trunk.patch_embed(torch.from_numpy(images).permute(0, 3, 1, 2)))
    states = []
    for blk in trunk.blocks:
      x = blk(x, rope=rope)
      states.append(x[:, 1:].numpy().reshape(1, 4, 4, -1))
  np.testing.assert_allclose(np.asarray(out['taps'][1]), states[0], atol=1e-4)
  np.testing.assert_allclose(np.asarray(out['taps'][3]), states[2], atol=1e-4)
  assert out['dense'].shape == (1, 4, 4, 24)


def test_bin_and_timm_vision_files_load_the_same(open_clip_checkpoint, tmp_path):
  from safetensors.torch import save_file
  path, ref = open_clip_checkpoint
  from_safetensors = load_eva02_clip(path)
  from_bin = load_eva02_clip(os.path.join(path, 'open_clip_pytorch_model.bin'))
  for tower in ('vision', 'text'):
    for a, b in zip(jax.tree.leaves(from_safetensors.params[tower]),
                    jax.tree.leaves(from_bin.params[tower])):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  trunk = {k: v.contiguous() for k, v in ref.visual.trunk.state_dict().items()}
  save_file(trunk, str(tmp_path / 'model.safetensors'))
  cfg, vision = load_eva02_vision(str(tmp_path), from_safetensors.config)
  assert cfg.vision_type == 'eva02'
  np.testing.assert_array_equal(
      np.asarray(vision['blocks']['2']['mlp']['fc2']['kernel']),
      np.asarray(from_safetensors.params['vision']['blocks']['2']['mlp']['fc2']['kernel']))


def test_checkpoint_errors_name_file_and_tensor(open_clip_checkpoint, tmp_path):
  from safetensors.torch import save_file
  path, ref = open_clip_checkpoint
  state = {k: v.contiguous() for k, v in ref.state_dict().items()}
  with open(os.path.join(path, 'open_clip_config.json')) as f:
    cfg = json.load(f)
  (tmp_path / 'open_clip_config.json').write_text(json.dumps(cfg))
  missing = dict(state)
  del missing['visual.trunk.blocks.1.attn.k_proj.weight']
  save_file(missing, str(tmp_path / 'open_clip_model.safetensors'))
  with pytest.raises(CheckpointError, match=r'open_clip_model.safetensors: missing parameter '
                     r'vision/blocks/1/attn/k_proj/kernel'):
    load_eva02_clip(str(tmp_path / 'open_clip_model.safetensors'), tokenizer='')
  cfg['model_cfg']['vision_cfg']['width'] = 48
  (tmp_path / 'open_clip_config.json').write_text(json.dumps(cfg))
  save_file(state, str(tmp_path / 'open_clip_model.safetensors'))
  with pytest.raises(
      CheckpointError,
      match=r'safetensors: parameter vision/\S+ has shape \(32, 32\), the model config asks for '
            r'\(48, 48\)'
  ):
    load_eva02_clip(str(tmp_path), tokenizer='')
  with pytest.raises(CheckpointError, match='no such checkpoint file or directory'):
    load_eva02_clip(str(tmp_path / 'nowhere'))
  os.remove(tmp_path / 'open_clip_config.json')
  save_file(dict(state, **{'visual.trunk.extra.weight': torch.zeros(2, 2, 2)}),
            str(tmp_path / 'open_clip_model.safetensors'))
  with pytest.raises(CheckpointError, match=r"unexpected vision tensor 'extra.weight'"):
    load_eva02_clip(str(tmp_path), tokenizer='')
