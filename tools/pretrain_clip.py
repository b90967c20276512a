r"""Pretrains the small world's tiny CLIP on captioned synthetic scenes (CPU, minutes).

  python -m tools.pretrain_clip --output hvl_jax/data/tiny_clip [--steps 1500] [--seed 0]

CLIP's recipe at toy scale: a ViT image tower and a causal text transformer of CLIP's
architecture (`models/backbones`), trained from scratch with the symmetric InfoNCE loss and a
learned temperature on scenes of every class of the synthetic world (`data/synthetic.py`, split
'pretrain') and their captions. The tokenizer is a byte-pair vocabulary of the world's words in
CLIP's format (vocab.json, merges.txt; `transformers.CLIPTokenizer` loads it), trained with the
`tokenizers` library so that every word of the world is one token and any other word falls back
to shorter pieces. The output is a Hugging Face CLIP checkpoint directory (config.json,
model.safetensors, tokenizer files) that `load_clip` and `transformers.CLIPModel` both load.
Deterministic from --seed. At the end it prints the zero-shot image-level presence precision and
recall on the synthetic val scenes (relevance modes 'crops', as the demo gates its class queries,
and 'dense') and the dense zero-shot mIoU, over the demo's 5 classes and over all 9, and writes
them with the command to `<output>/pretraining.json` (--evaluate_only: only this check).
"""
import json
import os
import time

import cv2
from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from hvl_jax.data import synthetic
from hvl_jax.models import zero_shot
from hvl_jax.models.backbones import clip as clip_lib
from hvl_jax.models.backbones import clip_weights
from hvl_jax.models.backbones.clip import CLIPConfig, TowerConfig
from hvl_jax.models.backbones.registry import CLIPModel

FLAGS = flags.FLAGS


def define_flags():
  """Command-line flags (defined only when run as a program, so the module imports cleanly)."""
  flags.DEFINE_string('output', synthetic.TINY_CLIP, 'Checkpoint directory to write.')
  flags.DEFINE_integer('steps', 1500, 'Optimizer steps.')
  flags.DEFINE_integer('batch', 128, 'Image-caption pairs per step.')
  flags.DEFINE_integer('scenes', 16384, 'Distinct pretraining scenes (cycled).')
  flags.DEFINE_float('lr', 2e-3, 'Peak learning rate (AdamW, warm-up then cosine).')
  flags.DEFINE_integer('seed', 0, 'Seed of the scenes, the initialisation and the batches.')
  flags.DEFINE_integer('val_scenes', 256, 'Synthetic val scenes of the final zero-shot check.')
  flags.DEFINE_float('threshold', 0.7,
                     'Presence threshold of the zero-shot check (configs/demo.py).')
  flags.DEFINE_bool('evaluate_only', False, 'Only run the zero-shot check of --output.')


IMAGE_SIZE = 64
DEMO_CLASSES = 5           # configs/demo.py trains on the first five classes of the world
CONTEXT_LENGTH = 32
SOS, EOS = '<|startoftext|>', '<|endoftext|>'
# ViT: 64x64 images in 8x8 patches; both towers 64 wide (the demo's sizes).
TOWER = dict(width=64, heads=4, mlp_dim=128)
VISION_LAYERS, TEXT_LAYERS, PROJECTION = 4, 2, 64


def world_tokenizer(path: str):
  """Writes vocab.json, merges.txt and the tokenizer configs of a BPE over the world's words
  (every letter also on its own, so unknown words still tokenize); returns the CLIPTokenizer."""
  # pylint: disable=g-import-not-at-top
  from tokenizers import Tokenizer, models, pre_tokenizers, trainers
  from transformers import CLIPTokenizer  # pylint: disable=g-import-not-at-top
  letters = [chr(c) for c in range(ord('a'), ord('z') + 1)] + [str(d) for d in range(10)]
  corpus = list(synthetic.WORDS) + letters + ['.', ',', "'"]
  bpe = Tokenizer(models.BPE(end_of_word_suffix='</w>'))
  bpe.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
  bpe.train_from_iterator(
      corpus,
      trainers.BpeTrainer(vocab_size=2000, min_frequency=1, end_of_word_suffix='</w>',
                          initial_alphabet=letters, show_progress=False))
  vocab = bpe.get_vocab()
  os.makedirs(path, exist_ok=True)
  for token in (SOS, EOS):          # CLIP's special tokens take the last ids, EOS the largest
    vocab[token] = len(vocab)
  with open(os.path.join(path, 'vocab.json'), 'w') as f:
    json.dump(dict(sorted(vocab.items(), key=lambda kv: kv[1])), f, indent=0)
  merges = json.loads(bpe.to_str())['model']['merges']
  with open(os.path.join(path, 'merges.txt'), 'w') as f:
    f.write('#version: 0.2\n' +
            ''.join(f'{" ".join(m) if isinstance(m, list) else m}\n' for m in merges))
  with open(os.path.join(path, 'tokenizer_config.json'), 'w') as f:
    json.dump(
        dict(tokenizer_class='CLIPTokenizer', model_max_length=CONTEXT_LENGTH, bos_token=SOS,
             eos_token=EOS, unk_token=EOS, pad_token=EOS, do_lower_case=True), f, indent=2)
  with open(os.path.join(path, 'special_tokens_map.json'), 'w') as f:
    json.dump(dict(bos_token=SOS, eos_token=EOS, unk_token=EOS, pad_token=EOS), f, indent=2)
  tok = CLIPTokenizer.from_pretrained(path)
  for word in synthetic.WORDS:
    if len(tok(word, add_special_tokens=False)['input_ids']) != 1:
      raise RuntimeError(f'the world tokenizer splits {word!r}: {tok.tokenize(word)}')
  return tok


def model_config(vocab_size: int, eos_id: int) -> CLIPConfig:
  tower = lambda layers: TowerConfig(layers=layers, **TOWER)
  return CLIPConfig(text=tower(TEXT_LAYERS), vision=tower(VISION_LAYERS), projection_dim=PROJECTION,
                    vocab_size=vocab_size, context_length=CONTEXT_LENGTH, patch_size=8,
                    image_size=IMAGE_SIZE, eos_token_id=eos_id)


def scenes(split: str, n: int, seed: int):
  """(images (n, 64, 64, 3) uint8, labels (n, 64, 64) uint8, captions) of every class of the
  world."""
  out = [synthetic.make_captioned_scene(seed, synthetic.SPLIT_OFFSETS[split] + i, IMAGE_SIZE,
                                        len(synthetic.CLASS_NAMES)) for i in range(n)]
  return np.stack([o[0] for o in out]), np.stack([o[1] for o in out]), [o[2] for o in out]


def crop_caption(label: np.ndarray) -> str:
  """The caption of a crop: the classes it shows, most pixels first, with their colour."""
  counts = np.bincount(label.ravel(), minlength=len(synthetic.CLASS_NAMES))
  kinds = [
      int(c)
      for c in np.argsort(-counts, kind='stable')
      if c > 0 and counts[c] >= synthetic.MIN_VISIBLE_PIXELS
  ]
  return synthetic.photo_of(
      [f'a {synthetic.COLOUR_NAMES[k]} {synthetic.CLASS_NAMES[k]}' for k in kinds])


def pretraining_pairs(n: int, seed: int):
  """n (image, caption) pairs: half whole scenes with their captions, half random square crops
  (a third to all of the side, resized to 64) captioned with the classes they show, so that
  local image features learn the words too (what the dense zero-shot relevance reads)."""
  images, labels, captions = scenes('pretrain', n, seed)
  rng = np.random.default_rng([seed, 1])
  for i in range(n):
    if rng.random() < 0.5:
      continue
    side = int(rng.integers(IMAGE_SIZE // 3, IMAGE_SIZE + 1))
    y, x = rng.integers(0, IMAGE_SIZE - side + 1, 2)
    box = (slice(y, y + side), slice(x, x + side))
    captions[i] = crop_caption(labels[i][box])
    images[i] = cv2.resize(images[i][box], (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR)
  return images, captions


def contrastive_loss(params, model, ids, images):
  """CLIP's symmetric InfoNCE over the batch, temperature exp(-logit_scale) learned."""
  text, image = model.apply({'params': params}, ids, images)
  text = text / jnp.linalg.norm(text, axis=-1, keepdims=True)
  image = image / jnp.linalg.norm(image, axis=-1, keepdims=True)
  logits = jnp.exp(params['logit_scale']) * image @ text.T
  labels = jnp.arange(logits.shape[0])
  return (optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
          + optax.softmax_cross_entropy_with_integer_labels(logits.T, labels).mean()) / 2


def train(cfg: CLIPConfig, tokenizer, steps: int, batch: int, n_scenes: int, lr: float, seed: int):
  """Trained CLIP parameters {'text', 'vision', 'logit_scale'}."""
  images, captions = pretraining_pairs(n_scenes, seed)
  ids = tokenizer(captions, padding='max_length', truncation=True, max_length=CONTEXT_LENGTH,
                  return_tensors='np')['input_ids'].astype(np.int32)
  model = CLIPModel(cfg)
  params = clip_weights.init_params(cfg, jax.random.PRNGKey(seed))
  params = dict(params, logit_scale=jnp.asarray(np.log(1 / 0.07), jnp.float32))
  schedule = optax.warmup_cosine_decay_schedule(0.0, lr, max(steps // 20, 1), steps)
  tx = optax.adamw(schedule, weight_decay=0.1)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, ids, images):
    loss, grads = jax.value_and_grad(contrastive_loss)(params, model, ids,
                                                       clip_lib.normalize_images(images))
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    # CLIP clips the learned logit scale at 100.
    return dict(params, logit_scale=jnp.minimum(params['logit_scale'],
                                                np.log(100.0))), opt_state, loss

  order = np.random.default_rng(seed)
  t0 = time.time()
  for i in range(steps):
    pick = order.choice(n_scenes, batch, replace=False)
    params, opt_state, loss = step(params, opt_state, ids[pick], images[pick])
    if (i + 1) % 100 == 0 or i == 0:
      print(
          f'[{i + 1}/{steps}] loss {float(loss):.4f} logit scale '
          f'{float(jnp.exp(params["logit_scale"])):.1f} '
          f'{time.time() - t0:.0f}s', flush=True)
  return params


def presence(scores, truth, threshold: float):
  """(precision, recall) of scores >= threshold against truth, both (N, K) without background."""
  p = scores >= threshold
  tp, fp, fn = (p & truth).sum(), (p & ~truth).sum(), (~p & truth).sum()
  return float(tp / max(tp + fp, 1)), float(tp / max(tp + fn, 1))


def zero_shot_check(clip: clip_weights.CLIP, n: int, seed: int, threshold: float,
                    num_classes: int) -> dict:
  """Zero-shot presence precision / recall of a world CLIP on val scenes of `num_classes`
  classes (prompts 'a photo of a {name}.'), with the relevance modes 'crops' (HVL's gating in
  the demo) and 'dense', and the dense zero-shot mIoU."""
  names = synthetic.CLASS_NAMES[:num_classes]
  source = synthetic.SyntheticSource('val', n, IMAGE_SIZE, num_classes, seed)
  images = np.stack([source[i]['image'] for i in range(n)])
  labels = np.stack([source[i]['label'] for i in range(n)])
  text = zero_shot.class_text_embeddings(clip, names)
  x = clip_lib.normalize_images(images)
  dense = clip.module.apply({'params': clip.params}, x, (), True,
                            method=CLIPModel.encode_image)['dense']
  probs = np.asarray(zero_shot.pixel_class_probs(dense, text, clip.logit_scale))      # (n, 8, 8, K)
  views = zero_shot.crop_views(x)
  crops = np.asarray(
      zero_shot.image_class_probs(clip.encode_image(views.reshape((-1,) + x.shape[1:])), text,
                                  clip.logit_scale)).reshape(views.shape[0], n, -1).max(0)
  truth = np.stack([np.isin(np.arange(num_classes), l) for l in labels])[:, 1:]
  report = dict(classes=num_classes, val_scenes=n, threshold=threshold)
  for mode, s in (('crops', crops), ('dense', probs.max((1, 2)))):
    report[f'{mode}_precision'], report[f'{mode}_recall'] = presence(s[:, 1:], truth, threshold)
  cells = probs.argmax(-1)
  pred = np.repeat(np.repeat(cells, IMAGE_SIZE // cells.shape[1], 1), IMAGE_SIZE // cells.shape[2],
                   2)
  inter = np.asarray([((pred == c) & (labels == c)).sum() for c in range(num_classes)])
  union = np.asarray([((pred == c) | (labels == c)).sum() for c in range(num_classes)])
  report['dense_miou'] = float((inter[union > 0] / union[union > 0]).mean())
  return report


def main(argv):
  del argv
  out = FLAGS.output
  if not FLAGS.evaluate_only:
    tokenizer = world_tokenizer(out)
    eos = tokenizer.convert_tokens_to_ids(EOS)
    cfg = model_config(len(tokenizer), eos)
    params = train(cfg, tokenizer, FLAGS.steps, FLAGS.batch, FLAGS.scenes, FLAGS.lr, FLAGS.seed)
    clip_weights.save_clip(cfg, params, out, bos_token_id=tokenizer.convert_tokens_to_ids(SOS),
                           pad_token_id=eos)
  clip = clip_weights.load_clip(out)
  reports = [zero_shot_check(clip, FLAGS.val_scenes, FLAGS.seed, FLAGS.threshold, k)
             for k in (DEMO_CLASSES, len(synthetic.CLASS_NAMES))]
  for report in reports:
    print(
        ' '.join(f'{k} {v:.3f}' if isinstance(v, float) else f'{k} {v}' for k, v in report.items()),
        flush=True)
  with open(os.path.join(out, 'pretraining.json'), 'w') as f:
    json.dump(
        dict(zero_shot=reports, command='python -m tools.pretrain_clip', steps=FLAGS.steps,
             batch=FLAGS.batch, scenes=FLAGS.scenes, lr=FLAGS.lr, seed=FLAGS.seed), f, indent=2)


if __name__ == '__main__':
  define_flags()
  app.run(main)
