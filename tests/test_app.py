"""The page (tools/app.py) and which photos to label next (tools/suggest_labels.py), on a workdir
of the tiny network with random parameters.

The page in a real browser: Debian's chromium driven by playwright (`executable_path`; .ci/run
installs chromium where it is missing), against the app started as a user starts it. The
overlay it shows is compared pixel for pixel with `Segmenter.segment`'s class map in the palette,
the legend with the class map's pixel shares; a non-image upload gets the reader's message and the
page segments again afterwards. The page's screenshot is kept in test-artifacts/app_page.png.
The uncertainty scores are checked against scipy's entropy and a numpy count.
"""
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
from PIL import Image
from playwright.sync_api import sync_playwright
import pytest
from scipy import stats

from hvl_jax.common import checkpoint as ckpt_lib
from hvl_jax.common import config_io
from hvl_jax.common import state as state_lib
from hvl_jax.data import datasets
from hvl_jax.data import synthetic
from hvl_jax.inference import segmenter
from hvl_jax.inference import visualize
from hvl_jax.models import hvl
from hvl_jax.training import optim
import gcs_emulator
import test_cli
from tiny import tiny_config
from tools import app as app_lib
from tools import suggest_labels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.path.join(ROOT, 'test-artifacts')
OTHER_NAMES = ('background', 'disk', 'square', 'triangle', 'star', 'cross')


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  """config_train.json and one checkpoint of the tiny network (random parameters)."""
  path = str(tmp_path_factory.mktemp('app') / 'run')
  config = tiny_config(**{'data.synthetic_unlabeled': 24})
  model, clip = hvl.build_model(config, datasets.class_names(config))
  state = state_lib.create_state(config, model, clip, lambda p: optim.make_optimizer(config, p, 10),
                                 config.data.crop_size)
  saver = ckpt_lib.Checkpointer(os.path.join(path, 'checkpoints'), async_save=False)
  saver.save(1, state)
  saver.close()
  config_io.write(config, path, 'train')
  return path


def scene(index=0, size=64):
  return synthetic.make_scene(seed=5, index=index, size=size, num_classes=5)[0]


def bad_uploads(folder):
  """{name: path} of uploads the readers refuse or convert."""
  os.makedirs(folder, exist_ok=True)
  paths = {
      n: os.path.join(folder, n)
      for n in ('notes.png', 'cut.jpg', 'deep.png', 'print.jpg', 'scene.png')
  }
  with open(paths['notes.png'], 'w') as f:
    f.write('not an image')
  buf = io.BytesIO()
  Image.fromarray(scene(1)).save(buf, 'JPEG')
  with open(paths['cut.jpg'], 'wb') as f:
    f.write(buf.getvalue()[:len(buf.getvalue()) // 2])
  Image.fromarray((scene(2)[..., 0].astype(np.uint16) * 257)).save(paths['deep.png'])
  Image.fromarray(scene(3)).convert('CMYK').save(paths['print.jpg'])
  Image.fromarray(scene(0)).save(paths['scene.png'])
  return paths


def test_uncertainty_scores_match_scipy_and_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(7, 9, 4)) * 3
  p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  assert suggest_labels.mean_entropy(p) == pytest.approx(
      stats.entropy(p.reshape(-1, 4), axis=1).mean(), rel=1e-9)
  assert suggest_labels.share_below(0.9)(p) == np.count_nonzero(p.max(-1) < 0.9) / 63


def test_the_small_worlds_picks_join_the_labeled_set():
  config = tiny_config(**{'data.synthetic_labeled': 3, 'data.synthetic_unlabeled': 6,
                          'data.synthetic_also_labeled': (4, 1)})
  sources = datasets.make_sources(config)
  assert [r['name'] for r in (sources['labeled'][i] for i in range(5))] == [
      'synthetic_labeled_000000', 'synthetic_labeled_000001', 'synthetic_labeled_000002',
      'synthetic_unlabeled_000001', 'synthetic_unlabeled_000004']
  assert suggest_labels.pool_names(sources['unlabeled']) == ['0', '2', '3', '5']
  np.testing.assert_array_equal(sources['labeled'][4]['label'], synthetic.make_scene(
      0, synthetic.SPLIT_OFFSETS['unlabeled'] + 4, config.data.synthetic_size, 5)[1])
  with pytest.raises(ValueError, match=r'synthetic_also_labeled.*\[9\]'):
    datasets.make_sources(
        tiny_config(**{'data.synthetic_unlabeled': 6, 'data.synthetic_also_labeled': (9,)}))


@pytest.mark.slow
def test_suggest_labels_ranks_the_pool_by_entropy(workdir):
  env = dict(os.environ, PYTHONPATH=ROOT, XLA_FLAGS=test_cli.ONE_DEVICE)
  out = subprocess.run(
      [sys.executable, '-m', 'tools.suggest_labels', '--workdir', workdir, '--count', '5'],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
  assert out.returncode == 0, out.stdout + out.stderr
  ranked = json.loads(open(os.path.join(workdir, 'suggested_labels.json')).read())
  suggested = open(os.path.join(workdir, 'suggested_labels.txt')).read().split()
  assert ranked['pool'] == 24 and len(ranked['ranking']) == 24
  assert suggested == [r['image'] for r in ranked['ranking'][:5]]
  assert f'   1  {ranked["ranking"][0]["score"]:.4f}  {suggested[0]}' in out.stdout
  # Each score from scipy's entropy of the Segmenter's probabilities of that scene.
  seg = segmenter.Segmenter.load(workdir)
  config = seg.config
  for r in ranked['ranking'][:3] + ranked['ranking'][-2:]:
    image, _ = synthetic.make_scene(config.data.synthetic_seed,
                                    synthetic.SPLIT_OFFSETS['unlabeled'] + int(r['image']),
                                    config.data.synthetic_size, config.data.num_classes)
    probs = seg.predictions([image])[0].probabilities
    assert r['score'] == pytest.approx(
        stats.entropy(probs.reshape(-1, probs.shape[-1]), axis=1).mean(), rel=1e-4)
  scores = [r['score'] for r in ranked['ranking']]
  assert scores == sorted(scores, reverse=True)
  page = app_lib.Page(workdir)
  assert f'| 1 | {suggested[0]} |' in page.suggestions_markdown()


@pytest.mark.slow
def test_the_page_segments_uploads_and_names_the_bad_ones(workdir, tmp_path):
  page = app_lib.Page(workdir)
  paths = bad_uploads(str(tmp_path))
  overlays, legends, status, downloads, photos, names, probabilities = page.segment(
      list(paths.values()), ', '.join(OTHER_NAMES))
  assert photos == ['deep.png', 'print.jpg', 'scene.png'] and tuple(names) == OTHER_NAMES
  assert 'notes.png: unreadable or truncated image' in status
  assert 'cut.jpg: unreadable or truncated image' in status
  assert 'deep.png: a 16-bit image' in status and 'print.jpg: a CMYK image' in status
  assert 'Segmented 3 photos' in status and len(downloads) == 6 and len(overlays) == 3
  reference = segmenter.Segmenter.load(workdir, class_names=OTHER_NAMES)
  image = np.asarray(Image.open(paths['scene.png']))
  classes = reference.segment(image)
  np.testing.assert_array_equal(overlays[2][0], visualize.overlay(image, classes))
  counts = np.bincount(classes.ravel(), minlength=len(OTHER_NAMES))
  for (colour, name, share) in app_lib.legend_rows(classes, OTHER_NAMES):
    k = OTHER_NAMES.index(name)
    assert share == counts[k] / classes.size and colour == '#%02x%02x%02x' % tuple(
        visualize.palette()[k])
  top = OTHER_NAMES[int(np.argmax(counts))]
  assert f'{top}</td><td class="share">{counts.max() / classes.size:.1%}' in legends
  assert probabilities['scene.png'].shape == (64, 64, len(OTHER_NAMES))
  # A photo above inference.max_side (4 x the 64 crop) is told of.
  Image.fromarray(scene(4, size=300)).save(tmp_path / 'large.png')
  _, _, status, _, _, _, _ = page.segment([str(tmp_path / 'large.png')], ', '.join(OTHER_NAMES))
  assert 'exceeds 256 px' in status and 'Segmented 1 photo ' in status
  assert page.segment([paths['scene.png']], ' , ')[2] == '**Type at least one class name.**'


def chromium() -> str:
  found = shutil.which('chromium') or shutil.which('chromium-browser')
  if not found:
    if os.environ.get('HVL_REQUIRE_BROWSER'):
      pytest.fail('no chromium on PATH (apt-get install chromium)')
    pytest.skip('no chromium on PATH (apt-get install chromium); .ci/run installs it')
  return found


@pytest.mark.slow
def test_the_page_in_a_browser(workdir, tmp_path):
  browser_path = chromium()
  paths = bad_uploads(str(tmp_path))
  port = gcs_emulator.free_port()
  env = dict(os.environ, PYTHONPATH=ROOT, XLA_FLAGS=test_cli.ONE_DEVICE)
  log_path = tmp_path / 'server.log'
  with open(log_path, 'w') as log:
    server = subprocess.Popen(
        [sys.executable, '-m', 'tools.app', '--workdir', workdir, '--port',
         str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
  # What the server and the page said, for a failure's message (a step that times out says why).
  said = []
  try:
    deadline = time.time() + 300
    while time.time() < deadline and server.poll() is None:
      try:
        socket.create_connection(('127.0.0.1', port), timeout=1).close()
        break
      except OSError:
        time.sleep(0.5)
    assert server.poll() is None, log_path.read_text()
    with sync_playwright() as p:
      browser = p.chromium.launch(executable_path=browser_path, args=['--no-sandbox'])
      tab = browser.new_page(viewport={'width': 1280, 'height': 1000})
      tab.set_default_timeout(180_000)     # the other test worker's compiles share the 2 cores
      hosts = set()
      tab.on('request', lambda r: hosts.add(r.url.split('/')[2]))
      tab.on('console', lambda m: said.append(f'console {m.type}: {m.text}'))
      tab.on('requestfailed', lambda r: said.append(f'failed {r.method} {r.url}: {r.failure}'))
      tab.on('response',
             lambda r: r.status >= 400 and said.append(f'{r.status} {r.request.method} {r.url}'))
      try:
        run_the_page(tab, port, workdir, paths)
      except Exception as e:
        raise AssertionError(f'{e}\n-- the page said:\n' + '\n'.join(said[-40:]) +
                             '\n-- the server said:\n' + log_path.read_text()[-4000:]) from e
      assert hosts == {f'127.0.0.1:{port}'}, hosts      # no request left the machine
      browser.close()
  finally:
    server.kill()
    server.wait()


def run_the_page(tab, port: int, workdir: str, paths: dict):
  """The user's steps on the page at `port`, with what each must show."""
  tab.goto(f'http://127.0.0.1:{port}/')
  trained = datasets.class_names(config_io.read(os.path.join(workdir, config_io.TRAINING_CONFIG)))
  assert tab.input_value('#names textarea') == ', '.join(trained)

  def segment(upload, names):
    """Uploads one photo in place of the last, types the names, presses Segment; the new status."""
    before = tab.inner_text('#status')
    if tab.query_selector('#photos button[aria-label="Clear"]'):
      tab.click('#photos button[aria-label="Clear"]')
      tab.wait_for_selector('#photos input[type=file]', state='attached')
    with tab.expect_response(
        lambda r: '/upload' in r.url and r.request.method == 'POST') as uploaded:
      tab.set_input_files('#photos input[type=file]', [upload])
    assert uploaded.value.ok, f'upload of {upload}: HTTP {uploaded.value.status}'
    # The file list names each file in its cell's aria-label (its text is split in stem and ext).
    tab.wait_for_selector('#photos td.filename[aria-label="%s"]' % os.path.basename(upload))
    tab.fill('#names textarea', names)
    tab.click('#segment')
    tab.wait_for_function(
        '([before]) => { const t = document.querySelector("#status").innerText; '
        'return t !== before && /^(Segmented|No photo)/.test(t.trim()); }', arg=[before],
        timeout=300_000)
    return tab.inner_text('#status')

  status = segment(paths['scene.png'], ', '.join(OTHER_NAMES))
  assert 'Segmented 1 photo' in status, status
  tab.wait_for_selector('#legend .legend')
  rows = [r.split('\t') for r in tab.inner_text('#legend .legend table').strip().splitlines()]
  image = np.asarray(Image.open(paths['scene.png']))
  classes = segmenter.Segmenter.load(workdir, class_names=OTHER_NAMES).segment(image)
  counts = np.bincount(classes.ravel(), minlength=len(OTHER_NAMES))
  expected = [(OTHER_NAMES[k], f'{counts[k] / classes.size:.1%}')
              for k in np.argsort(-counts, kind='stable')
              if counts[k]]
  assert [(r[-2].strip(), r[-1].strip()) for r in rows] == expected, rows
  src = tab.get_attribute('#overlays img', 'src')
  shown = np.asarray(Image.open(io.BytesIO(tab.request.get(src).body())).convert('RGB'))
  np.testing.assert_array_equal(shown, visualize.overlay(image, classes))
  tab.wait_for_function('() => { const i = document.querySelector("#view img"); '
                        'return i && i.complete && i.naturalWidth > 0; }', timeout=120_000)
  os.makedirs(ARTIFACTS, exist_ok=True)
  tab.screenshot(path=os.path.join(ARTIFACTS, 'app_page.png'), full_page=True)

  status = segment(paths['notes.png'], ', '.join(OTHER_NAMES))
  assert 'notes.png: unreadable or truncated image' in status, status
  assert 'No photo could be read' in status, status
  # The page keeps serving: the photos from before with other names.
  tab.fill('#names textarea', 'background, disk')
  tab.click('#segment')
  tab.wait_for_function(
      '() => /^No photo/.test(document.querySelector("#status").innerText.trim()) && '
      '!document.querySelector("#status").innerText.includes("s\\n")')
  assert re.search(r'(background|disk)\s+\d+\.\d%', tab.inner_text('#legend')) is None
