"""The package's import graph, function-local imports included: no cycle; evaluation, prediction and
the parameter restore import nothing of training (trainer, objective, optimizer, losses), the state
neither the optimizer nor the data; losses import no model; clip.py imports no EVA02; no module of
the repository is imported inside a function (where it could hide a cycle); lines fit in 100
columns; the trainer loads tensorboardX without torch."""
import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ('hvl_jax', 'tools', 'benchmarks', 'configs')
# Optional third-party dependencies, imported where they are needed (also recorded, to be checked).
LOCAL_IMPORTS_ALLOWED = {'torch', 'tensorflow_datasets', 'transformers'}
# The package's lazy attribute (`from hvl_jax import Segmenter`): imported on first use so that
# `python -m hvl_jax.main` imports no jax before its version check. Nothing imports it back.
LAZY_EXPORTS = {('hvl_jax', 'hvl_jax.inference.segmenter')}


def modules():
  """{dotted module name: path} of the repository's Python modules."""
  found = {}
  for package in PACKAGES:
    for directory, _, files in os.walk(os.path.join(ROOT, package)):
      for f in files:
        if f.endswith('.py'):
          rel = os.path.relpath(os.path.join(directory, f), ROOT)[:-3].replace(os.sep, '.')
          found[rel[:-len('.__init__')] if rel.endswith('.__init__') else rel] = os.path.join(
              directory, f)
  return found


def imports(path, known):
  """[(imported module, is function-local)] of one file, resolved to modules of the repository."""
  tree = ast.parse(open(path).read())
  local = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
           for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      # `from package import module` imports the module; `from module import name`, the module.
      modules_named = [
          f'{node.module}.{a.name}' for a in node.names if f'{node.module}.{a.name}' in known
      ]
      names = modules_named if len(modules_named) == len(
          node.names) else modules_named + [node.module]
    else:
      continue
    for name in names:
      if name in known or name.split('.')[0] in LOCAL_IMPORTS_ALLOWED:
        out.append((name, id(node) in local))
  return out


def graph():
  known = modules()
  return {m: {n for n, _ in imports(p, known) if n in known and n != m} for m, p in known.items()
         }, known


def reachable(g, start):
  seen, todo = set(), [start]
  while todo:
    for n in g[todo.pop()] - seen:
      seen.add(n)
      todo.append(n)
  return seen


def test_no_import_cycle():
  g, _ = graph()
  cycles = sorted(m for m in g if m in reachable(g, m))
  assert not cycles, f'modules on an import cycle: {cycles}'


TRAINING = ('hvl_jax.training.trainer', 'hvl_jax.training.objective', 'hvl_jax.training.optim',
            'hvl_jax.losses')


@pytest.mark.parametrize('module', [
    'hvl_jax.inference.evaluator', 'hvl_jax.inference.predict', 'hvl_jax.inference.predictor',
    'hvl_jax.common.state', 'hvl_jax.inference.segmenter', 'hvl_jax', 'tools.export'
])
def test_evaluation_prediction_and_the_restore_import_nothing_of_training(module):
  """Evaluating or predicting with a checkpoint builds no optimizer and traces no loss."""
  g, _ = graph()
  reached = sorted(n for n in reachable(g, module) if n.startswith(TRAINING))
  assert not reached, f'{module} reaches {reached}'


def test_the_state_imports_neither_the_optimizer_nor_the_data():
  g, _ = graph()
  assert not {
      n for n in g['hvl_jax.common.state']
      if n.startswith(('hvl_jax.training.optim', 'hvl_jax.data'))
  }, g['hvl_jax.common.state']


def test_losses_import_no_model():
  g, _ = graph()
  for m in ('hvl_jax.losses.segmentation', 'hvl_jax.losses.regularizers', 'hvl_jax.losses.matching',
            'hvl_jax.losses.semi'):
    assert not {n for n in reachable(g, m) if n.startswith('hvl_jax.models')}, m


def test_clip_imports_no_eva02():
  g, _ = graph()
  assert not {n for n in reachable(g, 'hvl_jax.models.backbones.clip') if 'eva02' in n}


def test_no_function_local_import_of_the_repositorys_modules():
  known = modules()
  offenders = [
      (m, n) for m, p in known.items() if m.startswith('hvl_jax') or m.startswith('tools')
      for n, is_local in imports(p, known)
      if is_local and n.split('.')[0] not in LOCAL_IMPORTS_ALLOWED and (m, n) not in LAZY_EXPORTS
  ]
  assert not offenders, offenders


def test_lines_fit_in_100_columns():
  """Python source lines stay within 100 columns."""
  sources = list(modules().values()) + python_sources_of_the_tests()
  long = [f'{os.path.relpath(p, ROOT)}:{i}' for p in sources
          for i, line in enumerate(open(p).read().splitlines(), 1) if len(line) > 100]
  assert not long, f'{len(long)} lines over 100 columns: {long[:10]}'


def python_sources_of_the_tests():
  return [os.path.join(ROOT, 'tests', f) for f in os.listdir(os.path.join(ROOT, 'tests'))
          if f.endswith('.py')]


def test_the_trainer_loads_tensorboardx_without_torch():
  """tensorboardX imports torch where it is installed (2 s of a start); the trainer's import of it
  does not, and torch still imports afterwards."""
  program = ('import sys\n'
             'from hvl_jax.training import trainer\n'
             "assert 'tensorboardX' in sys.modules and 'torch' not in sys.modules\n"
             'import torch\n'
             'trainer.SummaryWriter\n')
  subprocess.run([sys.executable, '-c', program], cwd=ROOT, check=True, timeout=300,
                 env=dict(os.environ, PYTHONPATH=ROOT))
