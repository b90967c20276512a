r"""A local Google Cloud Storage for the tests: gcp-storage-emulator, in memory, on 127.0.0.1.

  python tests/gcs_emulator.py --port 9023 --bucket hvl --lifetime 1800 [--data_dir DIR]

The emulator answers media downloads without the `x-goog-generation` header that GCS sends with
every object (https://cloud.google.com/storage/docs/xml-api/reference-headers#xgooggeneration);
tensorstore, under Orbax's checkpoints, reads it to make conditional writes and fails with
"Malformed StorageGeneration" without it. This script adds the header and nothing else.
`--lifetime` bounds the process: it exits by itself after that many seconds.

`environment(url)` is the standard environment that points gcsfs, google-cloud-storage and
tensorstore at the emulator; a program under test needs nothing else.
"""
import argparse
import os
import socket
import subprocess
import sys
import time
from typing import Dict, Optional
import urllib.parse
import urllib.request

from gcp_storage_emulator import server
from gcp_storage_emulator.handlers import objects

_download = objects.download


def download_with_generation(request, response, storage, *args, **kwargs):
  _download(request, response, storage, *args, **kwargs)
  try:
    obj = storage.get_file_obj(request.params['bucket_name'], request.params['object_id'])
  except Exception:  # pylint: disable=broad-except  # a 404: the original response stands
    return
  response['x-goog-generation'] = str(obj['generation'])
  response['x-goog-metageneration'] = str(obj.get('metageneration', '1'))


def environment(url: str) -> Dict[str, str]:
  return {
      'STORAGE_EMULATOR_HOST': url,                   # gcsfs, google-cloud-storage
      'TENSORSTORE_GCS_HTTP_URL': url,                # tensorstore (Orbax)
      'GOOGLE_AUTH_TOKEN_FOR_TESTING': 'emulator',    # tensorstore: no credentials lookup
      # gcsfs otherwise probes the bucket for hierarchical namespaces over gRPC, which the
      # emulator does not serve: a 60 s stall per file system.
      'GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT': 'false',
  }


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


class Emulator:
  """This script in a subprocess on `port` (default: a free one); `start` waits until it answers."""

  def __init__(self, port: Optional[int] = None, data_dir: str = '', lifetime_s: float = 1800,
               bucket: str = 'hvl'):
    self.port, self.data_dir, self.lifetime_s, self.bucket = port or free_port(
    ), data_dir, lifetime_s, bucket
    self.url = f'http://127.0.0.1:{self.port}'
    self.env = environment(self.url)
    self.process = None

  def start(self, timeout_s: float = 60) -> 'Emulator':
    cmd = [
        sys.executable, __file__, '--port',
        str(self.port), '--bucket', self.bucket, '--lifetime',
        str(self.lifetime_s)
    ] + (['--data_dir', self.data_dir] if self.data_dir else [])
    self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
      try:
        urllib.request.urlopen(self.url + '/', timeout=2).read()
        return self
      except OSError:
        if self.process.poll() is not None:
          raise RuntimeError(f'the GCS emulator exited with {self.process.returncode}')
        time.sleep(0.2)
    raise RuntimeError(f'the GCS emulator did not answer at {self.url} within {timeout_s} s')

  def has(self, name: str) -> bool:
    """Whether object `name` of the bucket exists (asked of the emulator, no client cache)."""
    try:
      urllib.request.urlopen(
          f'{self.url}/storage/v1/b/{self.bucket}/o/{urllib.parse.quote(name, safe="")}',
          timeout=5).read()
      return True
    except OSError:
      return False

  def stop(self):
    if self.process is not None and self.process.poll() is None:
      self.process.kill()
      self.process.wait(timeout=30)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--port', type=int, required=True)
  parser.add_argument('--bucket', default='hvl')
  parser.add_argument('--lifetime', type=float, default=1800)
  parser.add_argument('--data_dir', default='', help='keep the objects in this folder (default: in '
                      'memory), so that a restarted emulator serves them again')
  args = parser.parse_args()
  objects.download = download_with_generation      # objects.get(alt=media) calls it by name
  for _, handlers in server.HANDLERS:
    for method, handler in handlers.items():
      if handler is _download:
        handlers[method] = download_with_generation
  emulator = server.create_server('127.0.0.1', args.port, in_memory=not args.data_dir,
                                default_bucket=args.bucket, data_dir=args.data_dir or None)
  emulator.start()
  print(f'serving http://127.0.0.1:{args.port} (bucket {args.bucket}), pid {os.getpid()}',
        flush=True)
  try:
    time.sleep(args.lifetime)
  finally:
    emulator.stop()


if __name__ == '__main__':
  main()
