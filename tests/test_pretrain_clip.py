"""The small world's CLIP pretraining (tools/pretrain_clip.py): its tokenizer as CLIPTokenizer
reads it, the contrastive loss against a numpy transcription, and a short run whose checkpoint
load_clip reads back."""
import jax
import numpy as np

from hvl_jax.data import synthetic
from hvl_jax.models.backbones import clip as clip_lib
from hvl_jax.models.backbones import clip_weights
from hvl_jax.models.backbones.registry import CLIPModel
from tools import pretrain_clip


def test_world_tokenizer_and_short_pretraining(tmp_path):
  tok = pretrain_clip.world_tokenizer(str(tmp_path))
  assert all(len(tok(w, add_special_tokens=False)['input_ids']) == 1 for w in synthetic.WORDS)
  assert len(tok('a photo of a hexagon.',
                 add_special_tokens=False)['input_ids']) > 5  # unknown word: pieces
  eos = tok.convert_tokens_to_ids(pretrain_clip.EOS)
  assert eos == len(tok) - 1
  cfg = pretrain_clip.model_config(len(tok), eos)

  # The loss: symmetric cross-entropy of the scaled cosine similarities, numpy.
  params = clip_weights.init_params(cfg, jax.random.PRNGKey(0))
  images, _, captions = pretrain_clip.scenes('pretrain', 6, 0)
  ids = tok(captions, padding='max_length', max_length=cfg.context_length,
            return_tensors='np')['input_ids']
  x = clip_lib.normalize_images(images)
  loss = float(pretrain_clip.contrastive_loss(params, CLIPModel(cfg), ids, x))
  t, i = (np.asarray(e) for e in CLIPModel(cfg).apply({'params': params}, ids, x))
  t, i = t / np.linalg.norm(t, axis=-1, keepdims=True), i / np.linalg.norm(
      i, axis=-1, keepdims=True)
  logits = np.exp(float(params['logit_scale'])) * i @ t.T
  ce = lambda z: np.mean(np.log(np.exp(z).sum(1)) - np.diag(z))
  np.testing.assert_allclose(loss, (ce(logits) + ce(logits.T)) / 2, rtol=1e-4)

  trained = pretrain_clip.train(cfg, tok, steps=3, batch=8, n_scenes=32, lr=1e-3, seed=0)
  clip_weights.save_clip(cfg, trained, str(tmp_path), bos_token_id=eos - 1, pad_token_id=eos)
  clip = clip_weights.load_clip(str(tmp_path))
  jax.tree.map(np.testing.assert_allclose, clip.params, jax.device_get(trained))
  report = pretrain_clip.zero_shot_check(clip, 8, 0, 0.7, 5)
  assert 0 <= report['crops_precision'] <= 1 and 0 <= report['dense_miou'] <= 1
