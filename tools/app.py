r"""The page: segment your photos with your own class names, in a browser, on this machine.

  python -m tools.app --workdir runs/demo [--port 7860] [--host 127.0.0.1] [--checkpoint DIR]

A Gradio page on 127.0.0.1 (`--host 0.0.0.0` shares it on the network), with no request leaving
the machine: Gradio's analytics are off, no share link is made, and the theme uses the system's
fonts (the default one loads Google's). On it:
- **Photos**: upload one or several (any format and size the project's readers take; a photo
  above inference.max_side is segmented at that size and its class map resized back), or, for
  a small-world workdir (the demo's), press **Example scenes**.
- **Class names**, comma-separated, filled with the training classes. Other names are segmented
  with those names (open vocabulary, `Segmenter.load(..., class_names=...)`).
- **Segment**: the overlays, a legend per photo (colour, name, share of the pixels), the
  probability map of the class picked, the time taken, and the index PNGs and overlays to download.
- A photo that cannot be read is named with the reader's message and the others are segmented;
  the page keeps serving.
- **Which photos to label next**: the top of `<workdir>/suggested_labels.json`, which
  `python -m tools.suggest_labels --workdir W` writes.
"""
import html
import json
import os
import tempfile
import time
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')   # read when gradio is imported

from absl import app      # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags    # pylint: disable=g-import-not-at-top,wrong-import-position
import cv2                # pylint: disable=g-import-not-at-top,wrong-import-position
import gradio as gr       # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np        # pylint: disable=g-import-not-at-top,wrong-import-position
from PIL import Image     # pylint: disable=g-import-not-at-top,wrong-import-position

from hvl_jax.common import storage  # pylint: disable=g-import-not-at-top,wrong-import-position
# pylint: disable=g-import-not-at-top,wrong-import-position
from hvl_jax.common.errors import DataError
from hvl_jax.data import files  # pylint: disable=g-import-not-at-top,wrong-import-position
from hvl_jax.data import synthetic  # pylint: disable=g-import-not-at-top,wrong-import-position
from hvl_jax.inference import segmenter  # pylint: disable=g-import-not-at-top,wrong-import-position
from hvl_jax.inference import visualize  # pylint: disable=g-import-not-at-top,wrong-import-position
from tools import suggest_labels  # pylint: disable=g-import-not-at-top,wrong-import-position

SHOWN_SUGGESTIONS = 10
EXAMPLE_SCENES = 4
CACHED_NAME_SETS = 4       # segmenters kept for other class names (each compiles its own network)
VIEW_SIDE = 768            # the per-class view is shown at most this large
MIN_VIEW_SIDE = 256        # and at least this large
CSS = ('.legend{margin:4px 0 10px} .legend td{padding:1px 8px} '
       '.swatch{display:inline-block;width:14px;height:14px;border:1px solid #555}')



def parse_names(text: str) -> Tuple[str, ...]:
  """'background, cat,dog\\n' -> ('background', 'cat', 'dog'); commas or new lines separate."""
  return tuple(n.strip() for n in text.replace('\n', ',').split(',') if n.strip())


def upload_message(path: str, error: Exception) -> str:
  """The reader's message for an upload, with the upload's own name for the temporary path."""
  text = str(error)
  reason = text[len(path) + 2:] if text.startswith(path + ': ') else text
  return f'{os.path.basename(path)}: {reason}'


def legend_rows(classes: np.ndarray, names: Sequence[str]) -> List[Tuple[str, str, float]]:
  """(colour '#rrggbb', name, share of the pixels) of each class present, largest first."""
  counts = np.bincount(classes.ravel(), minlength=len(names))
  pal = visualize.palette()
  rows = [('#%02x%02x%02x' % tuple(pal[k]), names[k], counts[k] / classes.size)
          for k in np.argsort(-counts, kind='stable') if counts[k]]
  return rows


def legend_html(photo: str, classes: np.ndarray, names: Sequence[str]) -> str:
  rows = ''.join(
      f'<tr><td><span class="swatch" style="background:{c}"></span></td><td class="name">'
      f'{html.escape(n)}</td><td class="share">{s:.1%}</td></tr>'
      for c, n, s in legend_rows(classes, names))
  return (f'<div class="legend" data-photo="{html.escape(photo)}"><b>{html.escape(photo)}</b>'
          f'<table>{rows}</table></div>')


def probability_view(probabilities: np.ndarray, k: int) -> np.ndarray:
  """The probability map of class k, (h, w, 3) uint8 (cv2's viridis), its long side brought
  within [MIN_VIEW_SIDE, VIEW_SIDE] (small maps enlarged by whole pixels)."""
  p = probabilities[..., k]
  scale = min(1.0, VIEW_SIDE /
              max(p.shape)) if max(p.shape) >= MIN_VIEW_SIDE else MIN_VIEW_SIDE // max(p.shape)
  if scale != 1:
    p = cv2.resize(p, (max(1, round(p.shape[1] * scale)), max(1, round(p.shape[0] * scale))),
                   interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)
  heat = cv2.applyColorMap((np.clip(p, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
  return heat[..., ::-1].copy()


class Results(NamedTuple):
  """What one press of Segment shows."""
  overlays: List[Tuple[np.ndarray, str]]     # (overlay (H, W, 3) uint8, photo name)
  legends: str                               # HTML, one legend per photo
  status: str                                # markdown: time taken, messages
  downloads: List[str]                       # index PNG and overlay paths
  photos: List[str]                          # names of the photos segmented
  class_names: List[str]
  probabilities: Dict[str, np.ndarray]       # photo name -> (h, w, K) at the predicted size

  @classmethod
  def message(cls, status: str, class_names: Sequence[str] = ()) -> 'Results':
    return cls([], '', status, [], [], list(class_names), {})


class Page:
  """What the page does, without the page: segmenters by class names, uploads to results."""

  def __init__(self, workdir: str, checkpoint: Optional[str] = None):
    self.workdir, self.checkpoint = workdir, checkpoint
    self.trained = segmenter.Segmenter.load(workdir, checkpoint)
    self.segmenters: Dict[Tuple[str, ...],
                          segmenter.Segmenter] = {self.trained.class_names: self.trained}
    self.out_dir = tempfile.mkdtemp(prefix='hvl_app_')

  def segmenter(self, names: Tuple[str, ...]) -> segmenter.Segmenter:
    if names not in self.segmenters:
      if len(self.segmenters) > CACHED_NAME_SETS:     # the oldest other name set goes
        del self.segmenters[next(n for n in self.segmenters if n != self.trained.class_names)]
      self.segmenters[names] = segmenter.Segmenter.load(self.workdir, self.checkpoint,
                                                        class_names=names)
    return self.segmenters[names]

  def example_scenes(self) -> List[str]:
    """A few val scenes of the small world as PNG files (a synthetic workdir only, else [])."""
    data = self.trained.config.data
    if data.name != 'synthetic':
      return []
    folder = tempfile.mkdtemp(prefix='hvl_scenes_')
    paths = []
    for i in range(EXAMPLE_SCENES):
      image, _ = synthetic.make_scene(data.synthetic_seed, synthetic.SPLIT_OFFSETS['val'] + i,
                                      data.synthetic_size, data.num_classes)
      paths.append(os.path.join(folder, f'scene_{i}.png'))
      Image.fromarray(image).save(paths[-1])
    return paths

  def suggestions_markdown(self) -> str:
    path = storage.join(self.workdir, suggest_labels.RANKING)
    if not storage.exists(path):
      return (
          f'No ranking yet: `python -m tools.suggest_labels --workdir {self.workdir} --count 20` '
          f'ranks '
          'the unlabeled photos by the network\'s uncertainty.')
    ranked = json.loads(storage.read_text(path))
    lines = [f'The {min(SHOWN_SUGGESTIONS, len(ranked["ranking"]))} most uncertain of '
             f'{ranked["pool"]} unlabeled photos ({ranked["score"]}; all in `{path}`):', '',
             '| rank | photo | score |', '|---|---|---|']
    lines += [
        f'| {i} | {r["image"]} | {r["score"]:.4f} |'
        for i, r in enumerate(ranked['ranking'][:SHOWN_SUGGESTIONS], 1)
    ]
    return '\n'.join(lines)

  def segment(self, uploads: Optional[Sequence[str]], names_text: str) -> 'Results':
    """Uploaded file paths and the class-names text -> Results."""
    names = parse_names(names_text)
    if not names:
      return Results.message('**Type at least one class name.**')
    if len(set(n.lower() for n in names)) != len(names):
      return Results.message('**Each class name must be different.**')
    if not uploads:
      return Results.message('**Upload a photo first.**', names)
    seg = self.segmenter(names)
    messages, read = [], []
    for path in uploads:
      try:
        with files.open_file(path, 'image') as im:  # read once: the pixels and what was converted
          image, changed = files.upright_rgb(im, path), files.conversion(im.mode)
      except DataError as e:
        messages.append(upload_message(path, e))
        continue
      if changed:
        messages.append(f'{os.path.basename(path)}: {changed}')
      read.append((os.path.basename(path), image))
    start = time.perf_counter()
    predictions = seg.predictions([image for _, image in read]) if read else []
    elapsed = time.perf_counter() - start
    overlays, legends, downloads, probabilities = [], [], [], {}
    for (name, image), pred in zip(read, predictions):
      stem = os.path.splitext(name)[0]
      visualize.save_prediction(pred.classes, image, self.out_dir, stem)
      downloads += [
          os.path.join(self.out_dir, f'{stem}.png'),
          os.path.join(self.out_dir, f'{stem}_overlay.jpg')
      ]
      overlays.append((visualize.overlay(image, pred.classes), name))
      legends.append(legend_html(name, pred.classes, seg.class_names))
      probabilities[name] = pred.probabilities
    if any(seg.predictor.capped(*image.shape[:2]) for _, image in read):
      messages.append(seg.predictor.limit_note())
    status = [f'Segmented {len(read)} photo{"s" if len(read) != 1 else ""} in {elapsed:.2f} s '
              f'with {len(seg.class_names)} class names.' if read else 'No photo could be read.']
    status += [f'- {html.escape(m)}' for m in messages]
    return Results(overlays, ''.join(legends), '\n'.join(status), downloads, [n for n, _ in read],
                   list(seg.class_names), probabilities)


def build(page: Page) -> gr.Blocks:
  """The Gradio page of `page`."""
  with gr.Blocks(title='hvl_jax: segment your photos', analytics_enabled=False) as blocks:
    gr.Markdown(f'## Segment your photos with your class names\nThe network of `{page.workdir}` '
                f'(`{page.trained.checkpoint}`).')
    with gr.Row():
      with gr.Column():
        uploads = gr.File(label='Photos', file_count='multiple', type='filepath', elem_id='photos')
        examples = page.example_scenes()
        if examples:
          gr.Button('Example scenes', elem_id='examples').click(lambda: examples, outputs=uploads)
        names = gr.Textbox(label='Class names', value=', '.join(page.trained.class_names), lines=2,
                           elem_id='names')
        run = gr.Button('Segment', variant='primary', elem_id='segment')
        status = gr.Markdown(elem_id='status')
      with gr.Column():
        overlays = gr.Gallery(label='Overlays', format='png', columns=2, elem_id='overlays')
        legend = gr.HTML(elem_id='legend')
    with gr.Row():
      photo = gr.Dropdown(label='Photo', choices=[], elem_id='photo')
      klass = gr.Dropdown(label='Class', choices=[], elem_id='class')
    view = gr.Image(label='Probability of the class', type='numpy', format='png', elem_id='view')
    downloads = gr.File(label='Downloads: index PNGs and overlays', file_count='multiple',
                        elem_id='downloads')
    gr.Markdown('### Which photos to label next')
    gr.Markdown(page.suggestions_markdown(), elem_id='suggestions')
    probabilities = gr.State({})
    class_names = gr.State([])

    def segment(files_in, text):
      out = page.segment(files_in, text)
      photos, names_out, probs = out.photos, out.class_names, out.probabilities
      # shown first: the first photo's most probable class
      first = int(probs[photos[0]].mean((0, 1)).argmax()) if photos else None
      return (out.overlays, out.legends, out.status, out.downloads,
              gr.Dropdown(choices=photos, value=photos[0] if photos else None),
              gr.Dropdown(choices=names_out,
                          value=None if first is None else names_out[first]), probs, names_out,
              None if first is None else probability_view(probs[photos[0]], first))

    def show(probs, names_out, which, k):
      if not probs or which not in probs or k not in names_out:
        return None
      return probability_view(probs[which], names_out.index(k))

    # The view comes with the results; the dropdowns' own events are the user's picks only (a
    # `change` event would also fire on the results' update, racing them with stale state).
    run.click(
        segment, inputs=[uploads, names], outputs=[
            overlays, legend, status, downloads, photo, klass, probabilities, class_names, view
        ])
    for choice in (photo, klass):
      choice.input(show, inputs=[probabilities, class_names, photo, klass], outputs=view)
  return blocks


def serve(page: Page, host: str, port: int, block: bool = True):
  """Serves the page; returns (app, local URL) when not `block`."""
  theme = gr.themes.Default(font=['ui-sans-serif', 'system-ui', 'sans-serif'],
                            font_mono=['ui-monospace', 'monospace'])
  blocks = build(page)
  _, url, _ = blocks.launch(server_name=host, server_port=port, share=False,
                            prevent_thread_lock=not block, theme=theme, css=CSS, ssr_mode=False,
                            quiet=not block, footer_links=[], allowed_paths=[page.out_dir])
  return blocks, url


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not flags.FLAGS.workdir:
    raise app.UsageError('--workdir is needed: a training workdir (python -m hvl_jax.main --config '
                         'configs/demo.py --workdir runs/demo trains one)')
  try:
    page = Page(flags.FLAGS.workdir, flags.FLAGS.checkpoint)
  except (DataError, FileNotFoundError, ValueError, OSError) as e:
    raise SystemExit(f'error: {e}') from None
  print(
      f'Serving {flags.FLAGS.workdir} on http://{flags.FLAGS.host}:{flags.FLAGS.port} (Ctrl-C '
      f'stops)',
      flush=True)
  serve(page, flags.FLAGS.host, flags.FLAGS.port)


def define_flags():
  """The command's flags (defined when it runs, so that the module imports beside other tools)."""
  flags.DEFINE_string('workdir', None, 'A training workdir (its config and checkpoints).')
  flags.DEFINE_string('checkpoint', None, 'A checkpoint directory or step (default: the newest).')
  flags.DEFINE_string('host', '127.0.0.1', 'Address to serve on (0.0.0.0: every interface).')
  flags.DEFINE_integer('port', 7860, 'Port to serve on.')


if __name__ == '__main__':
  define_flags()
  app.run(main)
