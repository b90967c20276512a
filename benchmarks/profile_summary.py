"""Where a profiled step's device time goes, per network component.

A `jax.profiler` trace names each kernel by its HLO instruction (`hlo_op`); the compiled
module's metadata maps instructions to the JAX name stack (`op_name`, e.g.
`jit(train_step)/transpose(jvp(HVL.encode))/backbone/...`), which names the Flax module.
"""
import collections
import glob
import gzip
import json
import os
import re
from typing import Dict

# First match wins: (component, name-stack fragment).
COMPONENTS = (
    ('backbone E_I', '/backbone/'),
    ('reference encoder E_I^0', '/reference_encoder/'),
    ('text encoder E_T', '/text_encoder/'),
    ('HTQG', '/htqg/'),
    ('pyramid', '/pyramid/'),
    ('PTRM', '/ptrm'),
    ('pixel decoder (deformable attention)', '/pixel_decoder/'),
    ('DQTD', '/decoder/'),
    # Jitted library functions start a fresh name stack (no module path).
    ('bilinear sampling (deformable attention, criterion points)', '_map_coordinates'),
    ('top-k (criterion point selection)', 'top_k'),
)
_INSTR = re.compile(r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=.*?metadata=\{[^}]*?op_name="([^"]*)"')


def op_paths(hlo_text: str) -> Dict[str, str]:
  """{instruction name: JAX name stack} from a compiled module's text."""
  out = {}
  for line in hlo_text.splitlines():
    m = _INSTR.match(line)
    if m:
      out[m.group(1)] = m.group(2)
  return out


def component(path: str) -> str:
  for name, fragment in COMPONENTS:
    if fragment in path:
      return name
  return 'losses, matching, optimizer, glue'


def device_events(trace_dir: str):
  """(hlo_op, duration us) of every device kernel in the newest perfetto trace under `trace_dir`."""
  files = sorted(glob.glob(os.path.join(trace_dir, '**', 'perfetto_trace.json.gz'), recursive=True),
                 key=os.path.getmtime)
  if not files:
    raise FileNotFoundError(f'{trace_dir}: no perfetto_trace.json.gz (jax.profiler.trace with '
                            'create_perfetto_trace=True writes one)')
  with gzip.open(files[-1]) as f:
    data = json.load(f)
  events = data['traceEvents'] if isinstance(data, dict) else data
  names = {e['pid']: e.get('args', {}).get('name', '') for e in events
           if e.get('ph') == 'M' and e.get('name') == 'process_name'}
  gpu_pids = {pid for pid, n in names.items() if 'GPU' in n or 'TPU' in n or '/device:' in n}
  out = []
  for e in events:
    op = e.get('args', {}).get('hlo_op')
    if e.get('ph') == 'X' and op and (not gpu_pids or e['pid'] in gpu_pids):
      out.append((op, float(e.get('dur', 0.0))))
  return out


def summarize(trace_dir: str, hlo_text: str, steps: int, top: int = 12) -> str:
  """A table: device time per component (ms per step, share, backward share) and the top kernels."""
  paths = op_paths(hlo_text)
  per = collections.defaultdict(lambda: [0.0, 0.0])
  kernels = collections.Counter()
  for op, dur in device_events(trace_dir):
    path = paths.get(op, '')
    per[component(path)][0] += dur
    per[component(path)][1] += dur if 'transpose(' in path else 0.0
    kernels[(op, path)] += dur
  total = sum(v[0] for v in per.values()) or 1.0
  lines = [f'device time per step {total / steps / 1e3:.1f} ms (kernels only), by component:']
  for name, (t, bwd) in sorted(per.items(), key=lambda kv: -kv[1][0]):
    lines.append(
        f'  {name:40s} {t / steps / 1e3:8.1f} ms  {t / total:6.1%}  (backward '
        f'{bwd / max(t, 1e-9):.0%})'
    )
  buffered = sum(t for (op, _), t in kernels.items() if op.startswith('command_buffer'))
  if buffered > total / 2:
    lines.append(
        f'  note: {buffered / total:.0%} of the time is in CUDA graphs (command buffers), whose '
        f'kernels '
        'carry no op names; profile with XLA_FLAGS=--xla_gpu_enable_command_buffer= to attribute '
        'them'
    )
  lines.append('top kernels:')
  for (op, path), t in kernels.most_common(top):
    lines.append(f'  {t / steps / 1e3:7.2f} ms  {op[:40]:40s} {path[-110:]}')
  return '\n'.join(lines)
