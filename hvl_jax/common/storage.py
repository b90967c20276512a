"""Every path a run reads or writes, on a local disk or in a bucket (`gs://`), through etils.epath
(gcsfs behind it for `gs://`): workdir files, checkpoints' parent folders, predictions, exports,
datasets and split lists. Modules call this, never `open` or `os.path` on those paths.

- Local paths are made absolute (a later `chdir` cannot move them); URLs are kept as they are.
- Writes are whole or not at all: locally through a temporary renamed onto the target (atomic on
  POSIX); in a bucket an object upload is already atomic, so the object is written directly.
- Objects cannot be appended to: `LineLog` rewrites a log object whole on each flush.
- Runs write to local disks and `gs://` only, the places Orbax (tensorstore) can put a
  checkpoint; `check_writable` says so at start for any other scheme (`s3://`, ...).
"""
import os
import threading
from typing import Any, Callable, Iterator, List, Tuple, Union

from etils import epath

from hvl_jax.common.errors import StorageError

PathLike = Union[str, os.PathLike]
WRITABLE_SCHEMES = ('gs',)
WRITABLE_HINT = ('use a gs:// bucket, or a local or FUSE-mounted path (s3fs-fuse or rclone mount '
                 'for S3, gcsfuse for GCS)')


def scheme(p: PathLike) -> str:
  """'gs' for 'gs://bucket/x', '' for a local path."""
  s = os.fspath(p)
  return s.split('://', 1)[0] if '://' in s else ''


def is_remote(p: PathLike) -> bool:
  return bool(scheme(p))


def path(p: PathLike) -> epath.Path:
  """`p` as an epath.Path: absolute when local, the URL itself when remote."""
  if is_remote(p):
    # Other processes write the same workdir (the trainer, an evaluator, a pod's hosts): a
    # listing the file system cached before would hide their objects.
    epath.backend.fsspec_backend.fs(os.fspath(p)).invalidate_cache(os.fspath(p).split('://', 1)[1])
    return epath.Path(os.fspath(p))
  return epath.Path(os.path.abspath(os.path.expanduser(os.fspath(p))))


def join(p: PathLike, *parts: str) -> str:
  """`p/part/...` as a string (what tensorboardX, Orbax and the messages take)."""
  return os.fspath(path(p).joinpath(*parts))


def check_writable(p: PathLike, what: str):
  """Raises one line naming `what` (e.g. '--workdir') if `p` is on a store runs cannot write."""
  s = scheme(p)
  if s and s not in WRITABLE_SCHEMES:
    raise ValueError(f'{what} {os.fspath(p)}: {s}:// cannot hold this run\'s checkpoints (Orbax '
                     f'writes local paths and gs:// only); {WRITABLE_HINT}')


def bounded(fn: Callable[[], Any], timeout_s: float, what: str) -> Any:
  """fn() when it returns within `timeout_s`; else StorageError naming `what` (a URL). The
  libraries under a bucket retry a store that does not answer for many minutes; a run stops
  instead, with the store's previous objects as they were."""
  out = {}

  def target():
    try:
      out['value'] = fn()
    except BaseException as e:  # pylint: disable=broad-except  # re-raised in the caller
      out['error'] = e

  worker = threading.Thread(target=target, daemon=True, name='bounded-storage')
  worker.start()
  worker.join(timeout_s)
  if worker.is_alive():
    raise StorageError(f'{what}: the store did not answer within {timeout_s:g} s')
  if 'error' in out:
    e = out['error']
    raise StorageError(f'{what}: {type(e).__name__}: {e}'[:500]) from e
  return out.get('value')


def probe(p: PathLike, timeout_s: float):
  """Raises StorageError unless the store holding remote `p` answers within `timeout_s` (a no-op
  for local paths)."""
  if is_remote(p):
    bounded(lambda: path(p).exists(), timeout_s, os.fspath(p))


def exists(p: PathLike) -> bool:
  return path(p).exists()


def is_dir(p: PathLike) -> bool:
  return path(p).is_dir()


def is_file(p: PathLike) -> bool:
  return path(p).is_file()


def listdir(p: PathLike) -> List[str]:
  """The names in folder `p`, sorted."""
  return sorted(c.name for c in path(p).iterdir())


def walk(p: PathLike) -> Iterator[Tuple[str, List[str], List[str]]]:
  """os.walk over a local folder or a bucket prefix, top-down: (the folder relative to `p` with
  '/' separators, '' for `p` itself; sub-folder names, which may be pruned in place; file names)."""
  # epath yields a bucket's folders without their scheme ('bucket/x'), local ones as given.
  unscheme = lambda s: s.split('://', 1)[-1].rstrip('/')
  top = path(p)
  prefix = unscheme(os.fspath(top))
  for parent, dirs, names in top.walk():
    yield unscheme(os.fspath(parent))[len(prefix):].lstrip('/'), dirs, names


def read_bytes(p: PathLike) -> bytes:
  return path(p).read_bytes()


def read_text(p: PathLike) -> str:
  return path(p).read_text(encoding='utf-8')


def write_bytes(p: PathLike, data: bytes):
  """Writes `data` to `p` whole or not at all, making its folder if needed. Locally the
  temporary is per process, so several processes may race and one complete file wins."""
  target = path(p)
  target.parent.mkdir(parents=True, exist_ok=True)
  if is_remote(p):
    target.write_bytes(data)
    return
  partial = f'{target}.partial-{os.getpid()}'
  with open(partial, 'wb') as f:
    f.write(data)
  os.replace(partial, os.fspath(target))


def write_text(p: PathLike, text: str):
  write_bytes(p, text.encode('utf-8'))


class LineLog:
  """A text file that grows by lines (metrics.jsonl): appended to on a local disk; in a bucket,
  where objects cannot be appended to, the object is rewritten whole at each `flush`, bounded by
  `timeout_s`."""

  def __init__(self, p: PathLike, timeout_s: float = 600):
    self.path, self.timeout_s = path(p), timeout_s
    self.remote = is_remote(p)
    self.path.parent.mkdir(parents=True, exist_ok=True)
    if self.remote:
      self.lines = [self.path.read_text(encoding='utf-8')] if self.path.exists() else []
      self.file = None
    else:
      self.file = open(os.fspath(self.path), 'a', encoding='utf-8')

  def write(self, line: str):
    if self.remote:
      self.lines.append(line)
    else:
      self.file.write(line)

  def flush(self):
    if self.remote:
      text = ''.join(self.lines)
      bounded(lambda: self.path.write_text(text, encoding='utf-8'), self.timeout_s,
              os.fspath(self.path))
    else:
      self.file.flush()

  def close(self):
    self.flush()
    if self.file is not None:
      self.file.close()
