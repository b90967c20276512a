"""Train state and checkpoints: old micro-step checkpoints refused under gradient accumulation,
evaluation parameters restored, a missing directory named. Optimizer-step numbering of a real
run is checked by tests/test_cli.py and tests/test_train.py (kill and resume)."""

import jax
import numpy as np
import pytest

from hvl_jax.common import checkpoint as ckpt_lib
from hvl_jax.common import state as state_lib
from hvl_jax.data import datasets
from hvl_jax.models import hvl
from hvl_jax.training import optim
from tiny import tiny_config


@pytest.mark.slow
def test_old_micro_step_checkpoints_are_refused_under_accumulation(tmp_path):
  config = tiny_config(**{'train.grad_accum': 2})
  names = datasets.class_names(config)
  model, clip = hvl.build_model(config, names)
  tx_fn = lambda p: optim.make_optimizer(config, p, 10)
  state = state_lib.create_state(config, model, clip, tx_fn, config.data.crop_size)
  directory = tmp_path / 'checkpoints'
  saver = ckpt_lib.Checkpointer(str(directory), async_save=False)
  saver.save(3, state.replace(step=state.step + 3))
  saver.close()
  abstract = jax.eval_shape(lambda: state)
  restored, number = ckpt_lib.Checkpointer(str(directory), async_save=False).restore(abstract)
  assert number == 3 and int(restored.step) == 3
  params, source = state_lib.restore_params(config, model, clip, str(directory / '3'))
  assert source == str(directory / '3')
  np.testing.assert_array_equal(np.asarray(jax.tree.leaves(params['decoder'])[0]),
                                np.asarray(jax.tree.leaves(state.params['decoder'])[0]))


def test_restore_params_names_a_missing_directory(tmp_path):
  config = tiny_config()
  names = datasets.class_names(config)
  model, clip = hvl.build_model(config, names)
  with pytest.raises(ckpt_lib.CheckpointError, match='no such checkpoint directory'):
    state_lib.restore_params(config, model, clip, str(tmp_path / 'nothing'))
