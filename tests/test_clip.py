"""CLIP port: parity with transformers' PyTorch CLIP (HF-Flax and PyTorch checkpoints), prompt path,
resize, errors."""
import json
import os
import shutil

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hvl_jax.common.errors import CheckpointError
from hvl_jax.data import synthetic
from hvl_jax.models import zero_shot
from hvl_jax.models.backbones import clip as clip_lib
from hvl_jax.models.backbones import clip_weights
from hvl_jax.models.backbones import registry
from hvl_jax.models.backbones.clip_weights import load_clip, random_clip
from hvl_jax.ops import position
from hf_flax_reference import hf_flax_params


def _ids(rng, vocab, batch=3, length=16):
  ids = rng.randint(1, vocab - 1, (batch, length))
  ids[:, 0] = 0
  ids[np.arange(batch), [5, 9, 15]] = vocab - 1  # EOS at different positions
  return ids


def torch_features(hf, ids, images):
  """HF PyTorch CLIP's projected text features of (N, T) ids and image features of (B, H, W, 3)
  images, as numpy."""
  import torch
  with torch.no_grad():
    text = hf.get_text_features(input_ids=torch.tensor(ids, dtype=torch.long)).pooler_output
    image = hf.get_image_features(
        pixel_values=torch.tensor(images.transpose(0, 3, 1, 2))).pooler_output
  return text.numpy(), image.numpy()


def loaded_matches_torch(checkpoint, rng):
  """load_clip(directory) against the torch CLIPModel it was written from: projected text and
  image features and the logit scale. Returns (clip, hf, ids, images)."""
  path, hf = checkpoint
  clip = load_clip(path)
  ids = _ids(rng, hf.config.text_config.vocab_size)
  images = rng.randn(2, 32, 32, 3).astype(np.float32)
  ref_t, ref_i = torch_features(hf, ids, images)
  np.testing.assert_allclose(clip.encode_text(ids), ref_t, atol=1e-5)
  np.testing.assert_allclose(clip.encode_image(images), ref_i, atol=1e-5)
  np.testing.assert_allclose(clip.logit_scale, hf.logit_scale.exp().item(), rtol=1e-6)
  return clip, hf, ids, images


def test_msgpack_parity_with_torch_clip(hf_flax_checkpoint, rng):
  """An HF-Flax `flax_model.msgpack` (written from the torch model by HF's renaming rules)
  loads to HF PyTorch CLIP's numerics, hidden states included."""
  import torch
  clip, hf, ids, images = loaded_matches_torch(hf_flax_checkpoint, rng)
  with torch.no_grad():
    hf_out = hf(input_ids=torch.tensor(ids),
                pixel_values=torch.tensor(images.transpose(0, 3, 1, 2)), output_hidden_states=True)
  ours_v = clip.module.apply({'params': clip.params}, images,
                             method=registry.CLIPModel.encode_image)
  ours_t = clip.module.apply({'params': clip.params}, ids, method=registry.CLIPModel.encode_text)
  for a, b in zip(ours_v['hidden_states'], hf_out.vision_model_output.hidden_states):
    np.testing.assert_allclose(a, b.numpy(), atol=1e-5)
  for a, b in zip(ours_t['hidden_states'], hf_out.text_model_output.hidden_states):
    np.testing.assert_allclose(a, b.numpy(), atol=1e-5)


def test_safetensors_parity_with_torch_clip(hf_torch_checkpoint, rng):
  loaded_matches_torch(hf_torch_checkpoint, rng)


def test_saved_checkpoint_loads_in_torch_clip(hf_torch_checkpoint, tmp_path, rng):
  """save_clip writes what transformers' CLIPModel and load_clip read back, unchanged."""
  from transformers import CLIPModel
  path, _ = hf_torch_checkpoint
  clip = load_clip(path)
  clip_weights.save_clip(clip.config, clip.params, str(tmp_path / 'saved'))
  hf = CLIPModel.from_pretrained(str(tmp_path / 'saved')).eval()
  again = load_clip(str(tmp_path / 'saved'))
  ids = _ids(rng, clip.config.vocab_size)
  images = rng.randn(2, 32, 32, 3).astype(np.float32)
  ref_t, ref_i = torch_features(hf, ids, images)
  for c in (clip, again):
    np.testing.assert_allclose(c.encode_text(ids), ref_t, atol=1e-5)
    np.testing.assert_allclose(c.encode_image(images), ref_i, atol=1e-5)
  jax.tree.map(np.testing.assert_array_equal, clip.params, again.params)


def test_shipped_tiny_clip_matches_torch_clip(rng):
  """The small world's pretrained CLIP (tools/pretrain_clip.py): load_clip and transformers'
  CLIPModel and CLIPTokenizer read the shipped directory alike."""
  from transformers import CLIPModel, CLIPTokenizer
  clip = load_clip(synthetic.TINY_CLIP)
  hf = CLIPModel.from_pretrained(synthetic.TINY_CLIP).eval()
  tok = CLIPTokenizer.from_pretrained(synthetic.TINY_CLIP)
  prompts = [f'a photo of a {n}.' for n in synthetic.CLASS_NAMES
            ] + ['a photo of a large red disk and a cat.']
  ids = clip.tokenize(prompts)
  np.testing.assert_array_equal(
      ids,
      tok(prompts, padding='max_length', max_length=clip.config.context_length,
          return_tensors='np')['input_ids'])
  assert all(len(tok(w, add_special_tokens=False)['input_ids']) == 1 for w in synthetic.WORDS)
  images = rng.randn(3, 64, 64, 3).astype(np.float32)
  ref_t, ref_i = torch_features(hf, ids, images)
  np.testing.assert_allclose(clip.encode_text(ids), ref_t, atol=1e-5)
  np.testing.assert_allclose(clip.encode_image(images), ref_i, atol=1e-5)


def test_flax_named_safetensors(hf_flax_checkpoint, tmp_path, rng):
  """A Flax-named model.safetensors (what `FlaxCLIPModel.save_pretrained(safe_serialization=True)`
  wrote: the HF-Flax tree flattened with '.')."""
  from safetensors.numpy import save_file
  path, hf = hf_flax_checkpoint
  shutil.copy(os.path.join(path, 'config.json'), tmp_path / 'config.json')
  flat = flax.traverse_util.flatten_dict(hf_flax_params(hf), sep='.')
  save_file(flat, str(tmp_path / 'model.safetensors'))
  clip = load_clip(str(tmp_path))
  ids = _ids(rng, hf.config.text_config.vocab_size)
  images = rng.randn(1, 32, 32, 3).astype(np.float32)
  np.testing.assert_allclose(clip.encode_text(ids), torch_features(hf, ids, images)[0], atol=1e-5)


def test_tokenizer_matches_transformers(hf_flax_checkpoint):
  from transformers import CLIPTokenizer
  path, _ = hf_flax_checkpoint
  clip = load_clip(path)
  texts = ['a photo of a cat.', 'dog']
  ref = CLIPTokenizer.from_pretrained(path)(texts, padding='max_length', max_length=16)['input_ids']
  np.testing.assert_array_equal(clip.tokenize(texts), np.asarray(ref))


def test_prompt_embedding_path_equals_ids_path(hf_flax_checkpoint, rng):
  path, hf = hf_flax_checkpoint
  clip = load_clip(path)
  ids = jnp.asarray(_ids(rng, hf.config.text_config.vocab_size))
  m = clip.module
  p = {'params': clip.params}
  emb = m.apply(p, ids, method=lambda mod, i: mod.text.token_embeddings(i))
  eos = m.apply(p, ids, method=lambda mod, i: mod.text.text_model.eos_position(i))
  by_ids = m.apply(p, ids, method=registry.CLIPModel.encode_text)['text_embeds']
  by_emb = m.apply(p, None, emb, eos, method=registry.CLIPModel.encode_text)['text_embeds']
  np.testing.assert_allclose(by_emb, by_ids, atol=1e-6)


def test_position_embedding_resize():
  pos = jnp.asarray(np.random.RandomState(1).randn(1 + 16, 8), jnp.float32)
  np.testing.assert_array_equal(position.resize_position_embedding(pos, (4, 4), (4, 4)), pos)
  out = position.resize_position_embedding(pos, (4, 4), (6, 3))
  assert out.shape == (1 + 18, 8)
  np.testing.assert_array_equal(out[0], pos[0])
  # A constant grid stays constant under bicubic interpolation (weights sum to 1).
  const = jnp.ones((17, 8))
  np.testing.assert_allclose(position.resize_position_embedding(const, (4, 4), (8, 8)), 1,
                             atol=1e-5)


def test_vision_any_size_taps_and_dense(hf_flax_checkpoint, rng):
  path, _ = hf_flax_checkpoint
  clip = load_clip(path)
  images = rng.randn(2, 48, 24, 3).astype(np.float32)
  out = clip.module.apply({'params': clip.params}, images, (1, 3), True,
                          method=registry.CLIPModel.encode_image)
  assert out['taps'][1].shape == (2, 6, 3, 32)
  np.testing.assert_array_equal(out['taps'][3], out['hidden_states'][3][:, 1:].reshape(2, 6, 3, 32))
  assert out['dense'].shape == (2, 6, 3, 24)
  # MaskCLIP path by hand: ln1 -> v -> out -> post-LN -> projection on the last block's input.
  v = clip.params['vision']['vision_model']
  blk = v['encoder']['layers']['2']
  x = np.asarray(out['hidden_states'][2][:, 1:])

  def ln(x, p, eps=1e-5):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * np.asarray(p['scale']) + np.asarray(p['bias'])

  def dense(x, p):
    return x @ np.asarray(p['kernel']) + (np.asarray(p['bias']) if 'bias' in p else 0)

  y = dense(dense(ln(x, blk['layer_norm1']), blk['self_attn']['v_proj']),
            blk['self_attn']['out_proj'])
  y = dense(ln(y, v['post_layernorm']), clip.params['vision']['visual_projection'])
  np.testing.assert_allclose(out['dense'].reshape(2, 18, 24), y, atol=1e-5)
  with pytest.raises(ValueError, match='not divisible by the patch size'):
    clip.encode_image(np.zeros((1, 30, 32, 3), np.float32))


@pytest.mark.slow
def test_remat_and_bf16_options(hf_flax_checkpoint, rng):
  path, _ = hf_flax_checkpoint
  clip = load_clip(path)
  images = jnp.asarray(rng.randn(2, 32, 32, 3), jnp.float32)
  ref = clip.encode_image(images)
  loss = lambda p, m: m.apply({'params': p}, images, method=registry.CLIPModel.encode_image)[
      'image_embeds'].sum()
  g_ref = jax.grad(loss)(clip.params, clip.module)
  for remat in (True, 'dots_with_no_batch_dims_saveable', 'dots_saveable'):
    for scan in (True, False):
      g_remat = jax.grad(loss)(clip.params, registry.CLIPModel(clip.config, remat=remat, scan=scan))
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), g_ref, g_remat)
  with pytest.raises(ValueError, match="remat must be 'none' or one of .* got 'dots'"):
    jax.grad(loss)(clip.params, registry.CLIPModel(clip.config, remat='dots'))
  bf16 = registry.CLIPModel(clip.config, dtype=jnp.bfloat16).apply(
      {'params': clip.params}, images, method=registry.CLIPModel.encode_image)['image_embeds']
  assert bf16.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(bf16, np.float32), ref, atol=0.1, rtol=0.1)


def test_random_clip_any_size():
  cfg = clip_lib.CLIPConfig(text=clip_lib.TowerConfig(16, 1, 2, 32),
                            vision=clip_lib.TowerConfig(16, 2, 2, 32), projection_dim=8,
                            vocab_size=50, context_length=10, patch_size=4, image_size=16)
  clip = random_clip(cfg)
  ids = clip.tokenize(['a photo of a cat.', 'dog'])
  assert ids.shape == (2, 10) and ids[0, 0] == 48 and (ids == 49).any(axis=1).all()
  assert clip.encode_text(ids).shape == (2, 8)
  assert clip.encode_image(np.zeros((1, 20, 12, 3), np.float32)).shape == (1, 8)


def test_zero_shot_matches_numpy(hf_flax_checkpoint, rng):
  path, _ = hf_flax_checkpoint
  clip = load_clip(path)
  text = zero_shot.class_text_embeddings(clip, ['cat', 'dog', 'car'])
  raw = np.asarray(
      clip.encode_text(
          clip.tokenize(['a photo of a cat.', 'a photo of a dog.', 'a photo of a car.'])))
  raw = raw / np.linalg.norm(raw, axis=-1, keepdims=True)
  np.testing.assert_allclose(text, raw, atol=1e-6)
  img = rng.randn(2, 24).astype(np.float32)
  probs = zero_shot.image_class_probs(img, text, 100.0)
  logits = 100.0 * (img / np.linalg.norm(img, axis=-1, keepdims=True)) @ raw.T
  ref = np.exp(logits - logits.max(-1, keepdims=True))
  np.testing.assert_allclose(probs, ref / ref.sum(-1, keepdims=True), atol=1e-5)
  dense = rng.randn(2, 3, 4, 24).astype(np.float32)
  rel = zero_shot.class_relevance(dense, img, text, 100.0, 'dense')
  per_pixel = zero_shot.pixel_class_probs(dense, text, 100.0)
  np.testing.assert_allclose(rel, np.asarray(per_pixel).reshape(2, 12, 3).max(1), atol=1e-6)
  np.testing.assert_allclose(np.asarray(per_pixel).sum(-1), 1, atol=1e-5)
  # The dense max over the valid cells only (padding is not part of the image).
  valid = np.zeros((2, 3, 4), bool)
  valid[:, :2, :3] = True
  rel_valid = zero_shot.class_relevance(dense, img, text, 100.0, 'dense', valid)
  np.testing.assert_allclose(rel_valid,
                             np.asarray(per_pixel)[:, :2, :3].reshape(2, 6, 3).max(1), atol=1e-6)


def test_bad_checkpoints(hf_flax_checkpoint, tmp_path):
  path, _ = hf_flax_checkpoint
  with pytest.raises(CheckpointError, match='no such checkpoint directory'):
    load_clip(str(tmp_path / 'nope'))
  bad = tmp_path / 'bad'
  shutil.copytree(path, bad)
  os.remove(bad / 'flax_model.msgpack')
  with pytest.raises(CheckpointError, match='no weights file'):
    load_clip(str(bad))
  shutil.copy(os.path.join(path, 'flax_model.msgpack'), bad / 'flax_model.msgpack')
  cfg = json.load(open(bad / 'config.json'))
  cfg['projection_dim'] = 7
  json.dump(cfg, open(bad / 'config.json', 'w'))
  with pytest.raises(CheckpointError,
                     match=r'flax_model.msgpack: parameter text/text_projection/kernel has shape'):
    load_clip(str(bad))
  cfg['model_type'] = 'siglip'
  json.dump(cfg, open(bad / 'config.json', 'w'))
  with pytest.raises(CheckpointError, match='unknown architecture'):
    load_clip(str(bad))
  shutil.copy(os.path.join(path, 'config.json'), bad / 'config.json')
  (bad / 'flax_model.msgpack').write_bytes(b'\x00garbage')
  with pytest.raises(CheckpointError, match='flax_model.msgpack'):
    load_clip(str(bad))
  os.remove(bad / 'config.json')
  with pytest.raises(CheckpointError, match='config.json: missing'):
    load_clip(str(bad))
