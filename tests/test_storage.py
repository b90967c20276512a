"""The path layer (hvl_jax/common/storage.py) on a local disk and in a bucket of a real GCS
emulator (tests/gcs_emulator.py): reads, whole-or-nothing writes, logs that grow, listings, a
folder dataset read from gs:// equal to the same folder read from disk, the line for a scheme
runs cannot write, and the time bound on a store that does not answer."""
import json
import shlex
import os
import subprocess
import sys
import time

import gcsfs
import numpy as np
import pytest

from hvl_jax.common import storage
from hvl_jax.common.errors import StorageError
from hvl_jax.data import folder
import folder_dataset
import gcs_emulator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def bucket():
  """gs://hvl on an emulator of this module's own, the libraries pointed at it."""
  emulator = gcs_emulator.Emulator().start()
  saved = {k: os.environ.get(k) for k in emulator.env}
  os.environ.update(emulator.env)
  gcsfs.GCSFileSystem.clear_instance_cache()     # a file system made for another emulator
  yield 'gs://hvl'
  emulator.stop()
  gcsfs.GCSFileSystem.clear_instance_cache()
  for k, v in saved.items():
    if v is None:
      os.environ.pop(k, None)
    else:
      os.environ[k] = v


def test_files_in_a_bucket(bucket):
  run = f'{bucket}/files'
  assert storage.is_remote(run) and storage.path(run).as_posix() == run
  storage.write_text(storage.join(run, 'config_train.json'), json.dumps({'seed': 3}))
  storage.write_bytes(storage.join(run, 'export', 'blob.bin'), b'\x00\x01')
  assert json.loads(storage.read_text(f'{run}/config_train.json')) == {'seed': 3}
  assert storage.read_bytes(f'{run}/export/blob.bin') == b'\x00\x01'
  assert storage.is_file(f'{run}/config_train.json') and storage.is_dir(f'{run}/export')
  assert not storage.exists(f'{run}/best.json')
  assert storage.listdir(run) == ['config_train.json', 'export']

  log = storage.LineLog(f'{run}/metrics.jsonl')
  log.write('{"step": 1}\n')
  log.write('{"step": 2}\n')
  log.flush()
  log.close()
  resumed = storage.LineLog(f'{run}/metrics.jsonl')     # a resumed run goes on with the same file
  resumed.write('{"step": 3}\n')
  resumed.close()
  assert [json.loads(l)['step'] for l in storage.read_text(f'{run}/metrics.jsonl').splitlines()
         ] == [1, 2, 3]


def test_local_paths_are_absolute_and_writes_whole(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert storage.join('runs', 'a') == str(tmp_path / 'runs' / 'a') and not storage.is_remote('runs')
  target = tmp_path / 'runs' / 'best.json'
  storage.write_text('runs/best.json', 'old')
  assert target.read_text() == 'old'

  def interrupted(src, dst):
    raise OSError('disk full')

  monkeypatch.setattr(os, 'replace', interrupted)
  with pytest.raises(OSError):
    storage.write_text('runs/best.json', 'new')
  assert target.read_text() == 'old'

  log = storage.LineLog('runs/metrics.jsonl')
  log.write('a\n')
  log.close()
  assert (tmp_path / 'runs' / 'metrics.jsonl').read_text() == 'a\n'


def test_a_folder_dataset_read_from_the_bucket_equals_the_disk(bucket, tmp_path):
  local = str(tmp_path / 'data')
  folder_dataset.make(local)
  remote = f'{bucket}/datasets/mine'
  for parent, _, names in os.walk(local):
    for name in names:
      path = os.path.join(parent, name)
      storage.write_bytes(f'{remote}/{os.path.relpath(path, local)}', open(path, 'rb').read())
  assert folder.read_classes(remote) == folder_dataset.CLASSES
  on_disk, in_bucket = folder.make_sources(local, 4), folder.make_sources(remote, 4)
  for split in ('labeled', 'unlabeled', 'val'):
    assert in_bucket[split].entries == on_disk[split].entries and len(on_disk[split])
    for i in range(len(on_disk[split])):
      a, b = on_disk[split][i], in_bucket[split][i]
      assert sorted(a) == sorted(b)
      for key in a:
        np.testing.assert_array_equal(a[key], b[key])
  assert in_bucket['labeled'].label_fingerprint() == on_disk['labeled'].label_fingerprint()


def test_a_scheme_runs_cannot_write_is_one_line_before_any_work(tmp_path):
  with pytest.raises(ValueError, match=r'--workdir s3://b/run: s3:// cannot hold .* gs://'):
    storage.check_writable('s3://b/run', '--workdir')
  storage.check_writable('gs://b/run', '--workdir')
  storage.check_writable(str(tmp_path), '--workdir')
  t0 = time.time()
  out = subprocess.run([
      sys.executable, '-m', 'hvl_jax.main', '--config',
      os.path.join(ROOT, 'tests', 'tiny_cli.py'), '--workdir', 's3://b/run'
  ], cwd=tmp_path, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True,
                       timeout=300)
  lines = out.stderr.strip().splitlines()
  assert out.returncode == 1 and len(lines) == 1, out.stderr
  assert lines[0].startswith(
      'error: --workdir s3://b/run: s3:// cannot hold') and 's3fs-fuse' in lines[0]
  assert os.listdir(tmp_path) == [], 'nothing may be written for a refused workdir'
  assert time.time() - t0 < 120


def test_a_store_that_does_not_answer_is_a_storage_error():
  with pytest.raises(StorageError,
                     match=r'gs://b/run/checkpoints: the store did not answer within 0.2 s'):
    storage.bounded(lambda: time.sleep(3), 0.2, 'gs://b/run/checkpoints')
  with pytest.raises(StorageError, match=r'gs://b/x: ConnectionError: refused'):
    storage.bounded(lambda: (_ for _ in ()).throw(ConnectionError('refused')), 5, 'gs://b/x')
  assert storage.bounded(lambda: 7, 5, 'gs://b/x') == 7
  stopped = gcs_emulator.Emulator().start()
  stopped.stop()
  probe = subprocess.run([
      sys.executable, '-c', 'from hvl_jax.common import storage; storage.probe("gs://hvl/run", 10)'
  ], env=dict(os.environ, PYTHONPATH=ROOT, **stopped.env), capture_output=True, text=True,
                         timeout=120)
  assert probe.returncode != 0 and 'StorageError: gs://hvl/run' in probe.stderr, probe.stderr


def test_tpu_pod_runs_the_command_on_every_worker(tmp_path):
  """launch/tpu_pod.sh with a `gcloud` that records its arguments: every worker, the slice's own
  discovery, and the user's arguments reaching each worker's shell unchanged (POSIX shell
  parsing by shlex)."""
  fake = tmp_path / 'gcloud'
  fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$RECORD"\n')
  fake.chmod(0o755)
  record = tmp_path / 'args'
  user_args = ['--config.data.root=gs://b/coco', "--config.inference.class_names=('a cat', 'dog')"]
  subprocess.run([
      os.path.join(ROOT, 'launch', 'tpu_pod.sh'), 'pod', 'us-central2-b', 'configs/coco_232.py',
      'gs://b/runs/coco', *user_args
  ], check=True, timeout=60, env=dict(os.environ, PATH=f'{tmp_path}:{os.environ["PATH"]}',
                                      RECORD=str(record), HVL_COMPILATION_CACHE='gs://b/jax cache'))
  args = record.read_text().splitlines()
  assert args[:5] == ['compute', 'tpus', 'tpu-vm', 'ssh', 'pod'] and '--worker=all' in args
  command = next(a for a in args if a.startswith('--command='))[len('--command='):]
  words = shlex.split(command)
  assert 'HVL_DISTRIBUTED=1' in words and 'HVL_COMPILATION_CACHE=gs://b/jax cache' in words
  assert words[words.index('hvl_jax.main') + 1:] == [
      '--config', 'configs/coco_232.py', '--workdir', 'gs://b/runs/coco', *user_args
  ]
