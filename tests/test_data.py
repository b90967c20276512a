"""Data: readers on tiny fixtures in the real layouts, bad-input errors, transforms, rare-class
sampling statistics, pipeline determinism and iterator-state restore."""
import os

import numpy as np
import pytest
from PIL import Image

from hvl_jax.data import datasets, pipeline, rare_class, synthetic, transforms
from tiny import tiny_config


def write_image(path, h, w, seed=0):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.random.RandomState(seed).randint(0, 255, (h, w, 3), np.uint8)).save(path)


def write_label(path, label, palette=True):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  im = Image.fromarray(label.astype(np.uint8), mode='L')
  if palette:
    im = im.convert('P')
  im.save(path)


def voc_fixture(root, splits, n_labeled=3, n_unlabeled=4, n_val=2):
  def entries(prefix, n):
    lines = []
    for i in range(n):
      name = f'{prefix}_{i:04d}'
      write_image(f'{root}/JPEGImages/{name}.jpg', 40, 50, seed=i)
      label = np.zeros((40, 50), np.uint8)
      label[5:20, 10:30] = 1 + i % 20
      label[0, :] = 255
      write_label(f'{root}/SegmentationClass/{name}.png', label)
      lines.append(f'JPEGImages/{name}.jpg SegmentationClass/{name}.png')
    return lines
  os.makedirs(f'{splits}/pascal/92', exist_ok=True)
  open(f'{splits}/pascal/92/labeled.txt', 'w').write('\n'.join(entries('lab', n_labeled)) + '\n')
  open(f'{splits}/pascal/92/unlabeled.txt',
       'w').write('\n'.join(entries('unl', n_unlabeled)) + '\n')
  open(f'{splits}/pascal/val.txt', 'w').write('\n'.join(entries('val', n_val)) + '\n')
  import shutil
  shutil.copy(os.path.join(datasets.SHIPPED_SPLITS, 'classes.json'), f'{splits}/classes.json')


def voc_config(root, splits):
  c = tiny_config()
  c.data.update(dict(name='voc', root=str(root), splits_dir=str(splits), split='92',
                     num_classes=21))
  return c


def test_voc_reader(tmp_path):
  voc_fixture(tmp_path / 'voc', tmp_path / 'splits')
  src = datasets.make_sources(voc_config(tmp_path / 'voc', tmp_path / 'splits'))
  assert (len(src['labeled']), len(src['unlabeled']), len(src['val'])) == (3, 4, 2)
  r = src['labeled'][1]
  assert r['image'].shape == (40, 50, 3) and r['image'].dtype == np.uint8
  assert r['label'].dtype == np.uint8 and set(np.unique(r['label'])) == {0, 2, 255}
  assert 'label' not in src['unlabeled'][0]
  assert datasets.class_names(voc_config(tmp_path / 'voc', tmp_path / 'splits'))[1] == 'aeroplane'


def test_ade_remap_and_cityscapes_layout(tmp_path):
  root, splits = tmp_path / 'ade', tmp_path / 'splits'
  write_image(f'{root}/images/training/ADE_train_1.jpg', 8, 8)
  label = np.arange(64).reshape(8, 8) % 151
  write_label(f'{root}/annotations/training/ADE_train_1.png', label, palette=False)
  os.makedirs(f'{splits}/ade/1_128')
  line = 'images/training/ADE_train_1.jpg annotations/training/ADE_train_1.png\n'
  for f in ('ade/1_128/labeled.txt', 'ade/1_128/unlabeled.txt', 'ade/val.txt'):
    open(f'{splits}/{f}', 'w').write(line)
  c = tiny_config()
  c.data.update(
      dict(name='ade', root=str(root), splits_dir=str(splits), split='1_128', num_classes=150))
  out = datasets.make_sources(c)['labeled'][0]['label']
  assert out[0, 0] == 255 and out[0, 1] == 0 and out[1, 7] == 14   # 0 -> ignore, k -> k-1

  root = tmp_path / 'cs'
  name = 'leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png'
  gt = 'gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png'
  write_image(f'{root}/{name}', 16, 32)
  write_label(f'{root}/{gt}', np.full((16, 32), 18), palette=False)
  os.makedirs(f'{splits}/cityscapes/1_30')
  for f in ('cityscapes/1_30/labeled.txt', 'cityscapes/1_30/unlabeled.txt', 'cityscapes/val.txt'):
    open(f'{splits}/{f}', 'w').write(f'{name} {gt}\n')
  c.data.update(dict(name='cityscapes', root=str(root), split='1_30', num_classes=19))
  assert datasets.make_sources(c)['val'][0]['label'].max() == 18


def test_coco_unlabeled_is_train_minus_labeled(tmp_path):
  root, splits = tmp_path / 'coco', tmp_path / 'splits'
  for i in range(4):
    write_image(f'{root}/train2017/{i:012d}.jpg', 8, 8)
  write_label(f'{root}/masks/{0:012d}.png', np.zeros((8, 8)))
  os.makedirs(f'{splits}/coco/1_512')
  open(f'{splits}/coco/1_512/labeled.txt',
       'w').write(f'train2017/{0:012d}.jpg masks/{0:012d}.png\n')
  open(f'{splits}/coco/val.txt', 'w').write(f'train2017/{0:012d}.jpg masks/{0:012d}.png\n')
  c = tiny_config()
  c.data.update(
      dict(name='coco', root=str(root), splits_dir=str(splits), split='1_512', num_classes=81))
  unl = datasets.make_sources(c)['unlabeled']
  assert [e[0] for e in unl.entries] == [f'train2017/{i:012d}.jpg' for i in (1, 2, 3)]


def test_bad_inputs_name_file_and_problem(tmp_path):
  root, splits = tmp_path / 'voc', tmp_path / 'splits'
  voc_fixture(root, splits)
  c = voc_config(root, splits)
  src = datasets.make_sources(c)['labeled']
  # Missing image.
  os.remove(f'{root}/JPEGImages/lab_0000.jpg')
  with pytest.raises(datasets.DataError, match=r'lab_0000.jpg: image file not found'):
    src[0]
  # Truncated image.
  data = open(f'{root}/JPEGImages/lab_0001.jpg', 'rb').read()
  open(f'{root}/JPEGImages/lab_0001.jpg', 'wb').write(data[:len(data) // 2])
  with pytest.raises(datasets.DataError, match=r'lab_0001.jpg: unreadable or truncated'):
    src[1]
  # RGB-coloured label.
  Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(f'{root}/SegmentationClass/lab_0002.png')
  with pytest.raises(datasets.DataError, match=r'lab_0002.png: label is an RGB colour image'):
    src[2]
  # Size mismatch and out-of-range values.
  write_label(f'{root}/SegmentationClass/lab_0002.png', np.zeros((10, 10)))
  with pytest.raises(datasets.DataError,
                     match=r'lab_0002.png: label size 10x10 differs from its image 50x40'):
    src[2]
  write_label(f'{root}/SegmentationClass/lab_0002.png', np.full((40, 50), 30))
  with pytest.raises(datasets.DataError,
                     match=r'lab_0002.png: label values \[30\] outside \[0, 21\)'):
    src[2]
  # Empty split, missing list, missing root.
  open(f'{splits}/pascal/92/labeled.txt', 'w').write('\n')
  with pytest.raises(datasets.DataError, match=r'labeled.txt: the split list is empty'):
    datasets.make_sources(c)
  os.remove(f'{splits}/pascal/92/labeled.txt')
  with pytest.raises(datasets.DataError, match=r'labeled.txt: split list not found'):
    datasets.make_sources(c)
  c.data.root = str(tmp_path / 'nowhere')
  with pytest.raises(datasets.DataError, match='dataset root directory not found'):
    datasets.make_sources(c)


def test_synthetic_is_deterministic():
  a = synthetic.SyntheticSource('labeled', 4, 48, 5, seed=3)
  b = synthetic.SyntheticSource('labeled', 4, 48, 5, seed=3)
  for i in range(4):
    np.testing.assert_array_equal(a[i]['image'], b[i]['image'])
    np.testing.assert_array_equal(a[i]['label'], b[i]['label'])
  assert not np.array_equal(a[0]['image'],
                            synthetic.SyntheticSource('val', 4, 48, 5, seed=3)[0]['image'])
  labels = np.concatenate([a[i]['label'].ravel() for i in range(4)])
  assert labels.max() < 5 and (labels > 0).any()


def test_synthetic_captions_name_the_visible_objects():
  for i in range(40):
    image, label, text = synthetic.make_captioned_scene(0, i, 64, len(synthetic.CLASS_NAMES))
    # pylint: disable=protected-access
    _, _, objects = synthetic._scene(0, i, 64, len(synthetic.CLASS_NAMES))
    np.testing.assert_array_equal(image,
                                  synthetic.make_scene(0, i, 64, len(synthetic.CLASS_NAMES))[0])
    visible = {o.kind for o in objects if o.pixels >= synthetic.MIN_VISIBLE_PIXELS}
    assert visible <= set(np.unique(label).tolist())
    for k in range(1, len(synthetic.CLASS_NAMES)):
      named = f'{synthetic.COLOUR_NAMES[k]} {synthetic.CLASS_NAMES[k]}' in text
      assert named == (k in visible), (text, k)
    assert text.startswith('a photo of ') and set(text.rstrip('.').replace(',', '').split()) <= set(
        synthetic.WORDS)
  assert synthetic.photo_of(['a x', 'a y', 'a z']) == 'a photo of a x, a y and a z.'
  assert synthetic.photo_of(['a x']) == 'a photo of a x.'
  assert synthetic.photo_of([]) == 'a photo of the empty background.'
  assert synthetic.SyntheticSource('val', 2, 64, 5)[1]['caption'] == synthetic.make_captioned_scene(
      0, synthetic.SPLIT_OFFSETS['val'] + 1, 64, 5)[2]


def test_transforms(rng):
  image = rng.randint(0, 255, (30, 40, 3)).astype(np.uint8)
  label = rng.randint(0, 5, (30, 40)).astype(np.uint8)
  g = np.random.default_rng(0)
  img, lab = transforms.random_geometric(image, label, g, 64, (0.5, 0.5))
  assert img.shape == (64, 64, 3) and lab.shape == (64, 64)
  assert (lab == 255).any()            # 15x20 image in a 64 crop: padded with ignore
  assert (img[lab == 255] == 0).all()
  big, _ = transforms.resize(image, label, (60, 80))
  assert big.shape == (60, 80, 3)
  box = transforms.cutmix_box(64, np.random.default_rng(1), p=1.0)
  assert box.any() and not transforms.cutmix_box(64, np.random.default_rng(1), p=0.0).any()
  ys, xs = np.nonzero(box)
  assert box[ys.min():ys.max() + 1, xs.min():xs.max() + 1].all()   # one rectangle
  strong = transforms.strong_photometric(image, np.random.default_rng(2),
                                         tiny_config().data.strong_view)
  assert strong.shape == image.shape and strong.dtype == np.uint8
  gray = transforms.color_jitter(image, np.random.default_rng(0), 0, 0, 0, 0)
  np.testing.assert_allclose(gray.astype(int), image.astype(int), atol=2)   # identity jitter


def mmcv_rescale_size(old_size, scale):
  """mmcv.rescale_size((w, h), scale tuple) -> (w, h), transcribed."""
  w, h = old_size
  max_long_edge, max_short_edge = max(scale), min(scale)
  scale_factor = min(max_long_edge / max(h, w), max_short_edge / min(h, w))
  return int(w * float(scale_factor) + 0.5), int(h * float(scale_factor) + 0.5)


def test_rescale_size_matches_mmcv_on_random_sizes():
  rng = np.random.RandomState(0)
  for _ in range(2000):
    h, w = rng.randint(1, 3000, 2)
    ratio = rng.uniform(0.5, 2.0)
    # mmseg's random_sample_ratio: the scale times the ratio, truncated.
    scale = (int(2048 * ratio), int(512 * ratio))
    assert transforms.rescale_size(h, w, (2048, 512), ratio) == mmcv_rescale_size((w, h),
                                                                                  scale)[::-1]
    # mmseg's min_size rule at evaluation, then mmcv's rescale.
    new_h, new_w = (512 * h / w, 512) if h > w else (512, 512 * w / h)
    assert transforms.short_side_size(h, w, 512) == mmcv_rescale_size((w, h), (new_h, new_w))[::-1]
  assert transforms.short_side_size(375, 500, 512) == (512, 683)
  assert transforms.rescale_size(375, 500, (2048, 512), 1.0) == (512, 683)


def test_unimatch_rescale_draws_the_long_side():
  rng = np.random.default_rng(0)
  sizes = {transforms.random_rescale_size(30, 40, rng, (0.5, 2.0)) for _ in range(500)}
  # long side 20..80 (randint includes both ends), short side int(30 * long / 40 + 0.5)
  assert sizes == {(int(30 * l / 40 + 0.5), l) for l in range(20, 81)}


def test_rare_class_sampling_frequencies():
  # Class 1 covers most pixels, class 2 few: p(c) ∝ exp((1 - f_c) / T).
  class Source:
    labels = [np.array([[1, 1, 1, 1]]), np.array([[1, 1, 1, 2]]), np.array([[0, 1, 1, 1]])]

    def __len__(self):
      return 3

    def __getitem__(self, i):
      return dict(label=self.labels[i].astype(np.uint8))

  stats = rare_class.class_statistics(Source(), 3)
  assert stats['pixel_counts'] == [1, 10, 1]
  assert stats['images'] == [[[2, 1]], [[0, 4], [1, 3], [2, 3]], [[1, 1]]]
  t = 0.5
  sampler = rare_class.RareClassSampler(stats, t)
  f = np.array([1, 10, 1]) / 12
  p = np.exp((1 - f) / t) / np.exp((1 - f) / t).sum()
  np.testing.assert_allclose(sampler.probs, p)
  g = np.random.default_rng(0)
  draws = [sampler(g) for _ in range(20000)]
  freq = np.bincount([i for i, _ in draws], minlength=3) / 20000
  expected = np.array([p[1] / 3, p[1] / 3 + p[2], p[1] / 3 + p[0]])
  # 20000 draws: the standard error is below 0.004; 5 sigma.
  np.testing.assert_allclose(freq, expected, atol=0.02)
  assert all(stats['images'][c] and i in [j for j, _ in stats['images'][c]] for i, c in draws[:100])
  # DAFormer's min_pixels: only images with more than 3 pixels of class 1 are drawn for it.
  strict = rare_class.RareClassSampler(stats, t, min_pixels=3)
  assert {i for i, c in (strict(g) for _ in range(2000)) if c == 1} == {0}


def test_rare_class_crop_is_redrawn_until_the_class_survives():
  # An 80x80 image whose class 3 is one 8x8 square in a corner; crops of 64 after a rescale
  # of 0.5-2x (the crop keeps the square in about 40% of the draws without the rule).
  image = np.full((80, 80, 3), 90, np.uint8)
  label = np.zeros((80, 80), np.uint8)
  label[5:13, 67:75] = 3
  cfg = tiny_config().data
  cfg.rcs_min_pixels, cfg.rcs_min_crop_ratio = 20, 0.5

  def survived(rare_class_id, draws=1000):
    g = np.random.default_rng(0)
    kept = [(transforms.labeled_train(dict(image=image, label=label, rare_class=rare_class_id), g,
                                      cfg)['label_l'] == 3).sum() > 10 for _ in range(draws)]
    return np.mean(kept)

  with_rule, without = survived(3), survived(-1)
  assert with_rule >= 0.99, with_rule
  assert without < 0.6, without


def test_class_statistics_cache_follows_the_label_content(tmp_path):
  root, splits = tmp_path / 'voc', tmp_path / 'splits'
  voc_fixture(root, splits)
  config = voc_config(root, splits)
  source = datasets.make_sources(config)['labeled']
  key = rare_class.cache_key(source, 'voc/92', 21)
  folder = str(tmp_path / 'cache')
  stats = rare_class.cached_statistics(source, 21, key, [folder])
  assert os.listdir(folder) == [f'class_stats_{key[:16]}.json'] and stats['pixel_counts'][1] == 300
  # A changed label map under the same path: a new key, statistics computed anew.
  label = np.zeros((40, 50), np.uint8)
  label[:, :] = 7
  write_label(f'{root}/SegmentationClass/lab_0000.png', label)
  new_key = rare_class.cache_key(source, 'voc/92', 21)
  assert new_key != key and new_key != rare_class.cache_key(source, 'voc/183', 21)
  fresh = rare_class.cached_statistics(source, 21, new_key, [folder])
  assert fresh['pixel_counts'][1] == 0 and fresh['pixel_counts'][7] == 2000


def test_an_unlabeled_label_takes_the_weak_views_geometry():
  """label_u is the record's label under the weak view's own draw: the same rescale, padding,
  crop and flip as the image (random_geometric on the pair with the same rng)."""
  c = tiny_config(**{'data.scale_range': (0.6, 1.8)}).data
  image, label = synthetic.make_scene(0, 5, 50, 5)
  for seed in range(6):
    out = transforms.unlabeled_train(dict(image=image, label=label), np.random.default_rng(seed), c)
    ref_image, ref_label = transforms.random_geometric(image, label, np.random.default_rng(seed),
                                                       c.crop_size, c.scale_range, c.img_scale)
    np.testing.assert_array_equal(out['image_w'], ref_image)
    np.testing.assert_array_equal(out['label_u'], ref_label)
    np.testing.assert_array_equal(out['valid_u'], ref_label
                                  != 255)  # synthetic labels hold no ignore
  assert 'label_u' not in transforms.unlabeled_train(dict(image=image), np.random.default_rng(0), c)


def test_pipeline_shapes_determinism_and_state_restore(tmp_path):
  c = tiny_config()
  c.data.num_workers = 0
  sources = datasets.make_sources(c)
  it = iter(pipeline.train_dataset(c, sources, str(tmp_path)))
  first = next(it)
  assert first['image_l'].shape == (4, 64, 64, 3) and first['image_l'].dtype == np.uint8
  assert first['label_l'].shape == (4, 64, 64) and first['label_l'].dtype == np.int32
  # The strong views are the train step's (data.strong_view.where='device'): the host ships the weak
  # one.
  # The small world's unlabeled scenes keep their labels (label_u), for the pseudo-label accuracy.
  assert set(first) == {'image_l', 'label_l', 'image_w', 'valid_u', 'label_u'}
  assert first['image_w'].shape == (4, 64, 64, 3) and first['valid_u'].dtype == bool
  assert first['label_u'].shape == (4, 64, 64) and first['label_u'].dtype == np.int32
  hc = c.copy_and_resolve_references()
  hc.data.strong_view.where = 'host'
  host = next(iter(pipeline.train_dataset(hc, sources, str(tmp_path))))
  for k in ('image_w', 'image_s1', 'image_s2'):
    assert host[k].shape == (4, 64, 64, 3)
  for k in ('box1', 'box2', 'valid_u'):
    assert host[k].shape == (4, 64, 64) and host[k].dtype == bool
  np.testing.assert_array_equal(host['image_w'], first['image_w'])   # the same geometry either way
  state = it.get_state()
  nxt = [next(it) for _ in range(2)]
  it.set_state(state)
  again = [next(it) for _ in range(2)]
  for a, b in zip(nxt, again):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  fresh = next(iter(pipeline.train_dataset(c, sources, str(tmp_path))))
  for k in first:
    np.testing.assert_array_equal(first[k], fresh[k])
  assert [n for n in os.listdir(tmp_path) if n.startswith('class_stats_')]
  assert pipeline.total_steps(c, sources) == c.train.steps
  c.train.steps = -1
  c.train.epochs = 2
  assert pipeline.total_steps(c,
                              sources) == 2 * (c.data.synthetic_unlabeled // c.data.unlabeled_batch)


def test_check_reports_scaled_masks_and_bad_files(tmp_path):
  from tools import check_data as check
  root, splits = tmp_path / 'voc', tmp_path / 'splits'
  voc_fixture(root, splits)
  c = voc_config(root, splits)
  lines, problems = check.check_sources(datasets.make_sources(c), 21)
  assert not problems and lines[0].startswith(
      'labeled        3 of 3 entries read, images 50-50 x 40-40')
  # 0/255-scaled binary masks pass every per-file check but not the dataset check.
  for i in range(3):
    label = np.zeros((40, 50), np.uint8)
    label[10:20, 10:20] = 255
    write_label(f'{root}/SegmentationClass/lab_{i:04d}.png', label)
  os.remove(f'{root}/JPEGImages/val_0001.jpg')
  _, problems = check.check_sources(datasets.make_sources(c), 21)
  assert any('0/255-scaled' in p and p.startswith('labeled') for p in problems)
  assert any('val_0001.jpg: image file not found' in p for p in problems)


def test_make_split_is_balanced_deterministic_and_disjoint(tmp_path):
  from tools import make_split
  entries = [(f'img{i}.jpg', f'lab{i}.png') for i in range(40)]
  classes = [{0, 1} for _ in range(40)]
  classes[7] = {0, 5}     # the only image of class 5
  classes[23] = {0, 9}    # the only image of class 9
  lab, unl = make_split.draw_split(entries, 5, seed=3, classes_per_entry=classes)
  assert len(lab) == 5 and len(unl) == 35
  assert entries[7] in lab and entries[23] in lab
  assert make_split.draw_split(entries, 5, seed=3, classes_per_entry=classes) == (lab, unl)
  assert make_split.draw_split(entries, 5, seed=4)[0] != make_split.draw_split(entries, 5,
                                                                               seed=5)[0]
  make_split.write_split(str(tmp_path / 's'), lab, unl)
  assert len(open(tmp_path / 's' / 'labeled.txt').read().splitlines()) == 5
  with pytest.raises(FileExistsError):
    make_split.write_split(str(tmp_path / 's'), lab, unl)
  with pytest.raises(ValueError, match='overlap'):
    make_split.write_split(str(tmp_path / 't'), lab, unl + lab[:1])


def test_cityscapes_converter(tmp_path):
  from tools import convert_cityscapes
  path = tmp_path / 'gtFine' / 'train' / 'aachen' / 'a_gtFine_labelIds.png'
  os.makedirs(path.parent)
  Image.fromarray(np.asarray([[7, 8, 0, 33], [26, 4, 24, 255]], np.uint8)).save(path)
  out = convert_cityscapes.convert_file(str(path), convert_cityscapes.lookup_table())
  assert out.endswith('_gtFine_labelTrainIds.png')
  np.testing.assert_array_equal(np.asarray(Image.open(out)), [[0, 1, 255, 18], [13, 255, 11, 255]])


def test_coco_converter_on_handmade_json(tmp_path):
  import json
  from tools import convert_coco
  os.makedirs(tmp_path / 'annotations')
  square = lambda x, y, s: [[x, y, x + s, y, x + s, y + s, x, y + s]]
  data = dict(
      images=[dict(id=5, width=20, height=10, file_name='000000000005.jpg')], categories=[
          dict(id=1, name='person'),
          dict(id=3, name='car'),
          dict(id=90, name='toothbrush')
      ], annotations=[
          dict(id=1, image_id=5, category_id=3, segmentation=square(0, 0, 8), area=64,
               bbox=[0, 0, 8, 8], iscrowd=0),
          dict(id=2, image_id=5, category_id=90, segmentation=square(2, 2, 3), area=9,
               bbox=[2, 2, 3, 3], iscrowd=0),
          dict(id=3, image_id=5, category_id=1, segmentation=square(12, 1, 4), area=16,
               bbox=[12, 1, 4, 4], iscrowd=1),
      ])
  json.dump(data, open(tmp_path / 'annotations' / 'instances_val2017.json', 'w'))
  assert convert_coco.convert(str(tmp_path), 'val2017') == 1
  mask = np.asarray(Image.open(tmp_path / 'masks' / '000000000005.png'))
  assert mask.shape == (10, 20)
  # Contiguous ids by sorted category id: 1 -> 1, 3 -> 2, 90 -> 3; crowd -> 255.
  assert mask[6, 6] == 2 and mask[3, 3] == 3 and mask[2, 13] == 255 and mask[9, 19] == 0
  assert set(np.unique(mask)) == {0, 2, 3, 255}


def test_worker_processes_give_the_same_batches(tmp_path):
  from absl import flags
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()   # grain reads absl flags; the CLI parses them in app.run
  c = tiny_config()
  c.data.num_workers = 0
  sources = datasets.make_sources(c)
  single = iter(pipeline.train_dataset(c, sources, str(tmp_path)))
  expected = [next(single) for _ in range(3)]
  c.data.num_workers = 2
  it = iter(pipeline.train_dataset(c, sources, str(tmp_path)))
  first = next(it)
  state = it.get_state()
  rest = [next(it), next(it)]
  for a, b in zip([first] + rest, expected):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  again = iter(pipeline.train_dataset(c, sources, str(tmp_path)))
  again.set_state(state)
  np.testing.assert_array_equal(next(again)['image_w'], rest[0]['image_w'])


def test_tfds_source_feeds_the_pipeline(tmp_path):
  """A TFDS dataset built locally (ArrayRecord, Tensor features: no TensorFlow needed)."""
  import tensorflow_datasets as tfds

  class HvlTinySeg(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version('1.0.0')

    def _info(self):
      feat = lambda c: tfds.features.Tensor(shape=(None, None, c), dtype=np.uint8, encoding='zlib')
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
          {'image': feat(3), 'segmentation_mask': feat(1)}))

    def _split_generators(self, dl_manager):
      return {
          'train': self._generate_examples(12, 0), 'validation': self._generate_examples(3, 100)
      }

    def _generate_examples(self, n, offset):
      for i in range(n):
        image, label = synthetic.make_scene(0, offset + i, 48, 4)
        yield i, {'image': image, 'segmentation_mask': label[..., None]}

  HvlTinySeg(data_dir=str(tmp_path), file_format='array_record').download_and_prepare()
  c = tiny_config()
  c.data.update(dict(name='tfds', num_classes=4, crop_size=64, class_names=('bg', 'a', 'b', 'c')))
  c.data.tfds.update(dict(name='hvl_tiny_seg', data_dir=str(tmp_path), labeled_split='train[:4]',
                          unlabeled_split='train[4:]', val_split='validation'))
  src = datasets.make_sources(c)
  assert (len(src['labeled']), len(src['unlabeled']), len(src['val'])) == (4, 8, 3)
  # TFDS stores examples in its own (key-hashed) order: match them as a set.
  expected = [synthetic.make_scene(0, 100 + i, 48, 4) for i in range(3)]
  for i in range(3):
    r = src['val'][i]
    match = [k for k, (image, _) in enumerate(expected) if np.array_equal(r['image'], image)]
    assert len(match) == 1
    np.testing.assert_array_equal(r['label'], expected[match[0]][1])
  assert datasets.class_names(c) == ('bg', 'a', 'b', 'c')
  batch = next(iter(pipeline.train_dataset(c, src, str(tmp_path))))
  assert batch['image_l'].shape == (4, 64, 64, 3) and batch['image_w'].shape == (4, 64, 64, 3)
  c.data.tfds.label_key = 'mask'
  with pytest.raises(datasets.DataError,
                     match=r"tfds:hvl_tiny_seg\[train\[:4\]\].*no feature 'mask'"):
    datasets.make_sources(c)['labeled'][0]
  c.data.tfds.name = 'no_such_dataset_here'
  with pytest.raises(datasets.DataError, match='cannot open'):
    datasets.make_sources(c)
