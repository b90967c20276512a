"""A user's folder dataset: the layout, the reading policy for real photo files (one case each),
each mistake in one line naming the file, the colour-mask converter against a numpy
transcription, the class-balanced labeled list, and the folder config resolved from the folder."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from configs import folder as folder_config
from hvl_jax.common.errors import DataError
from hvl_jax.data import datasets
from hvl_jax.data import files
from tools import colour_masks
from tools import make_split
import folder_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def data(tmp_path):
  root = str(tmp_path / 'mine')
  folder_dataset.make(root)
  return root


def config_of(root, arg='tiny'):
  c = folder_config.get_config(arg)
  with c.unlocked():
    c.data.root = root
  return c


def test_the_folder_gives_its_pools_classes_and_background(data):
  config = datasets.resolved(config_of(data))
  assert config.data.class_names == folder_dataset.CLASSES and config.data.num_classes == 4
  assert config.data.background_classes == (0,)
  sources = datasets.make_sources(config)
  assert (len(sources['labeled']), len(sources['unlabeled']), len(sources['val'])) == (8, 6, 4)
  assert all(label is None for _, label in sources['unlabeled'].entries)
  # splits/labeled.txt picks the labeled pool; the other labeled images become unlabeled.
  os.makedirs(os.path.join(data, 'splits'))
  with open(os.path.join(data, 'splits', 'labeled.txt'), 'w') as f:
    f.write('c_2.jpg\nfield/north/b_1.png\n')
  sources = datasets.make_sources(config)
  assert [e[0] for e in sources['labeled'].entries
         ] == ['images/train/c_2.jpg', 'images/train/field/north/b_1.png']
  assert len(sources['unlabeled']) == 12
  # No class named 'background': no background class.
  with open(os.path.join(data, 'classes.txt'), 'w') as f:
    f.write('soil\nred square\ngreen disk\nblue band\n')
  assert datasets.resolved(config_of(data)).data.background_classes == ()


def write_image(path, im: Image.Image, **kwargs):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  im.save(path, **kwargs)
  return path


def test_every_image_mode_is_read_as_upright_rgb(tmp_path):
  rng = np.random.RandomState(0)
  rgb = rng.randint(0, 256, (12, 20, 3)).astype(np.uint8)
  gray = rgb[..., 0]
  p = lambda name: str(tmp_path / name)
  np.testing.assert_array_equal(files.read_image(write_image(p('l.png'), Image.fromarray(gray))),
                                np.repeat(gray[..., None], 3, -1))
  np.testing.assert_array_equal(files.read_image(write_image(p('rgba.png'), Image.fromarray(
      np.concatenate([rgb, np.full((12, 20, 1), 7, np.uint8)], -1)))), rgb)
  pal = Image.fromarray(gray % 4).convert('P')
  pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9] + [0] * 756)
  colours = np.asarray([[255, 0, 0], [0, 255, 0], [0, 0, 255], [9, 9, 9]], np.uint8)
  np.testing.assert_array_equal(files.read_image(write_image(p('p.png'), pal)), colours[gray % 4])
  cmyk = files.read_image(write_image(p('c.tif'), Image.fromarray(rgb).convert('CMYK')))
  np.testing.assert_array_equal(cmyk,
                                np.asarray(Image.fromarray(rgb).convert('CMYK').convert('RGB')))
  sixteen = (rng.randint(0, 65536, (12, 20))).astype(np.uint16)
  np.testing.assert_array_equal(
      files.read_image(write_image(p('g16.png'), Image.fromarray(sixteen))),
      np.repeat((sixteen >> 8).astype(np.uint8)[..., None], 3, -1))
  # EXIF orientation 6: stored sideways, read upright (turned 90 degrees clockwise).
  exif = Image.Exif()
  exif[folder_dataset.EXIF_ORIENTATION] = 6
  stored = np.kron(rng.randint(0, 2, (3, 5)), np.ones((8, 8))).astype(np.uint8) * 255
  read = files.read_image(
      write_image(p('r.jpg'), Image.fromarray(np.repeat(stored[..., None], 3, -1)),
                  exif=exif.tobytes(), quality=100))
  assert read.shape == (40, 24, 3)
  assert np.abs(read[..., 0].astype(int) - np.rot90(stored, k=-1)).mean() < 4


def test_label_formats_palette_gray_and_sixteen_bit(tmp_path):
  values = np.random.RandomState(1).randint(0, 4, (9, 11)).astype(np.uint8)
  values[0, 0] = 255
  pal = Image.fromarray(values, mode='L').convert('P')
  pal.putpalette(list(np.random.RandomState(2).randint(0, 256, 768)))
  for name, im in (('p.png', Image.fromarray(values).convert('P')),
                   ('l.png', Image.fromarray(values)), ('i16.png',
                                                        Image.fromarray(values.astype(np.uint16)))):
    label = files.read_label(write_image(str(tmp_path / name), im))
    np.testing.assert_array_equal(label, values)
  big = values.astype(np.uint16)
  big[3, 3] = 300
  with pytest.raises(DataError, match=r'big.png: label values \[300\] do not fit 8 bits'):
    files.read_label(write_image(str(tmp_path / 'big.png'), Image.fromarray(big)))


def mistake(data, edit):
  """The one line that reading the folder, after `edit(root)`, fails with."""
  edit(data)
  with pytest.raises(DataError) as e:
    sources = datasets.make_sources(datasets.resolved(config_of(data)))
    for name in ('labeled', 'val'):
      for i in range(len(sources[name])):
        sources[name][i]    # pylint: disable=pointless-statement
  assert '\n' not in str(e.value)
  return str(e.value)


def test_a_label_without_an_image(data):
  line = mistake(data, lambda r: os.remove(os.path.join(r, 'images/train/field/a_0.jpg')))
  assert 'labels/train/field/a_0.png: a label with no image' in line


def test_an_image_in_labels(data):
  line = mistake(data, lambda r: shutil.copy(os.path.join(r, 'images/train/c_2.jpg'),
                                              os.path.join(r, 'labels/train/x.jpg')))
  assert 'labels/train/x.jpg: not a PNG' in line


def test_an_rgb_colour_mask_points_to_the_converter(data):
  def edit(r):
    path = os.path.join(r, 'labels/train/c_2.png')
    Image.fromarray(np.asarray(folder_dataset.COLOURS,
                               np.uint8)[np.asarray(Image.open(path))]).save(path)
  line = mistake(data, edit)
  assert 'labels/train/c_2.png: label is an RGB colour image' in line
  assert 'tools.colour_masks' in line


def test_label_values_beyond_the_classes(data):
  def edit(r):
    path = os.path.join(r, 'labels/val/v_1.png')
    label = np.asarray(Image.open(path)).copy()
    label[2, 2] = 7
    Image.fromarray(label).save(path)
  assert 'labels/val/v_1.png: label values [7] outside [0, 4)' in mistake(data, edit)


@pytest.mark.parametrize(
    'text,expected',
    [('background\nsoil\n\nsheep\n', 'classes.txt:3: empty class name'),
     ('background\nSheep\nsheep\n', "classes.txt:3: class name 'sheep' repeats line 2")])
def test_bad_class_names(data, text, expected):
  def edit(r):
    with open(os.path.join(r, 'classes.txt'), 'w') as f:
      f.write(text)
  assert expected in mistake(data, edit)


def test_a_label_of_the_photo_as_stored_names_both_files(data):
  rel, upright = folder_dataset.make(data)['rotated']

  def edit(r):
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, k=1))).save(
        os.path.join(r, 'labels/train/phone/r_7.png'))
  line = mistake(data, edit)
  assert 'labels/train/phone/r_7.png is 70x92' in line
  assert f'{rel} is 92x70 once turned upright' in line


def test_a_val_image_without_a_label(data):
  line = mistake(data, lambda r: os.remove(os.path.join(r, 'labels/val/v_2.png')))
  assert 'images/val/v_2.png: a val image without a label' in line


def reference_index(mask, table):
  """Pixel by pixel: the table's label of each colour, None where it has none."""
  out = np.zeros(mask.shape[:2], np.int64)
  unknown = {}
  for y in range(mask.shape[0]):
    for x in range(mask.shape[1]):
      rgb = tuple(int(v) for v in mask[y, x])
      if rgb in table:
        out[y, x] = table[rgb]
      else:
        unknown[rgb] = unknown.get(rgb, 0) + 1
  return out, unknown


def test_colour_masks_match_a_numpy_transcription(tmp_path):
  rng = np.random.RandomState(0)
  colours = [tuple(int(v) for v in rng.randint(0, 256, 3)) for _ in range(7)]
  with open(tmp_path / 'colours.txt', 'w') as f:
    f.writelines(f'{r} {g} {b} class {k}\n' for k, (r, g, b) in enumerate(colours[:6]))
    f.write(f'{colours[6][0]} {colours[6][1]} {colours[6][2]} ignore\n')
  table, names = colour_masks.read_colours(str(tmp_path / 'colours.txt'))
  assert names == [f'class {k}' for k in range(6)] and table[colours[6]] == 255
  for trial in range(5):
    mask = np.asarray(colours, np.uint8)[rng.randint(0, 7, (17, 23))]
    if trial == 4:
      mask[3:5, 2:9] = (1, 2, 3)
    index, missing = colour_masks.to_index(mask, table)
    ref, ref_missing = reference_index(mask, table)
    assert missing == ref_missing
    if not missing:
      np.testing.assert_array_equal(index, ref)
  assert missing == {(1, 2, 3): 14}


def test_the_converter_writes_every_mask_or_none(tmp_path):
  masks, out = tmp_path / 'masks', tmp_path / 'labels'
  table = ''.join(
      f'{r} {g} {b} {n}\n' for (r, g, b), n in zip(folder_dataset.COLOURS, folder_dataset.CLASSES))
  (tmp_path / 'colours.txt').write_text(table)
  rng = np.random.RandomState(0)
  labels = {}
  for rel in ('a.png', 'sub/b.png'):
    labels[rel] = rng.randint(0, 4, (10, 12)).astype(np.uint8)
    write_image(str(masks / rel),
                Image.fromarray(np.asarray(folder_dataset.COLOURS, np.uint8)[labels[rel]]))
  os.makedirs(out)
  (out / 'keep.png').write_bytes(b'untouched')
  bad = np.asarray(folder_dataset.COLOURS, np.uint8)[labels['sub/b.png']]
  bad[0, :5] = (250, 250, 0)
  write_image(str(masks / 'sub/c.png'), Image.fromarray(bad))
  cmd = [sys.executable, '-m', 'tools.colour_masks', '--colours', str(tmp_path / 'colours.txt'),
         '--input', str(masks), '--output', str(out)]
  result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
  assert result.returncode == 1
  assert (f'{masks / "sub/c.png"}: colour (250, 250, 0) is in no line of the colour table '
          '(5 pixels)') in result.stderr
  assert sorted(os.listdir(out)) == ['keep.png'] and not list(tmp_path.glob('labels.partial-*'))
  os.remove(masks / 'sub/c.png')
  classes = tmp_path / 'classes.txt'
  classes.write_text('\n'.join(folder_dataset.CLASSES))
  result = subprocess.run(cmd + ['--classes', str(classes)], cwd=ROOT, capture_output=True,
                          text=True, check=True)
  for rel, label in labels.items():
    np.testing.assert_array_equal(np.asarray(Image.open(out / rel)), label)
  classes.write_text('\n'.join(reversed(folder_dataset.CLASSES)))
  result = subprocess.run(cmd + ['--classes', str(classes)], cwd=ROOT, capture_output=True,
                          text=True, check=False)
  assert result.returncode == 1 and "class 0 is 'background' but" in result.stderr


def test_make_split_draws_a_class_balanced_labeled_list(data):
  path = make_split.folder_split(data, 3, seed=0)
  with open(path) as f:
    chosen = f.read().split()
  assert len(chosen) == 3 and all(
      os.path.isfile(os.path.join(data, 'images/train', c)) for c in chosen)
  sources = datasets.make_sources(datasets.resolved(config_of(data)))
  assert [e[0] for e in sources['labeled'].entries] == [f'images/train/{c}' for c in chosen]
  with pytest.raises(FileExistsError):
    make_split.folder_split(data, 3, seed=0)


def test_check_data_reports_the_folder(data):
  cmd = [
      sys.executable, '-m', 'tools.check_data', '--config', 'configs/folder.py:tiny',
      f'--config.data.root={data}'
  ]
  result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'OK' in result.stdout and '4 classes' in result.stdout, result.stderr[-2000:]
  os.remove(os.path.join(data, 'images/val/v_0.png'))
  result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
  assert result.returncode == 1 and 'labels/val/v_0.png: a label with no image' in result.stderr
