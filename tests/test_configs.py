"""Configs: every dataset config (both backbones), ablation, demo, folder and benchmark variant
builds a model and every other component from its subtree; the base config is the components'
dataclasses' defaults, field for field; dotted overrides name a bad field; the command line rejects
mistakes in one line."""
import glob
import importlib
import os
import subprocess
import sys

import pytest

from benchmarks import train_step
from configs import ablations, base
from configs import folder
from hvl_jax.common import config_tree
from hvl_jax.data import datasets
from hvl_jax.data.data_config import DataConfig
from hvl_jax.inference.evaluator import EvalConfig
from hvl_jax.inference.predictor import InferenceConfig
from hvl_jax.models import hvl
from hvl_jax.models.backbones import clip_weights, registry
from hvl_jax.training import objective
from hvl_jax.training.optim import OptimConfig
from hvl_jax.training.trainer import TrainConfig
import folder_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASET_CONFIGS = sorted(
    os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, 'configs', '*_[0-9]*.py')))
# The variants benchmarks/gpu_suite.sh times.
GPU_SUITE_VARIANTS = [
    'cudnn:model.compute.attention_impl=xla',
    'dots:model.backbone_remat=dots_with_no_batch_dims_saveable', 'accum1:train.grad_accum=1',
    'host:data.strong_view.where=host'
]


# Each subtree of the config and the dataclass that holds its fields and defaults.
SUBTREES = {'data': DataConfig, 'model': hvl.ModelConfig, 'inference': InferenceConfig,
            'loss': objective.ObjectiveConfig, 'optim': OptimConfig, 'train': TrainConfig}


def build(config):
  """The HVL module of a config, with a CLIP of its sizes that holds no weights (nothing loaded);
  every other subtree builds its component's config too."""
  for name, cls in SUBTREES.items():
    assert isinstance(config_tree.build(cls, config[name], name), cls)
  settings = hvl.model_config(config)
  cfg = registry.clip_config(settings.clip, settings.backbone)
  clip = clip_weights.CLIP(cfg, None, clip_weights.HashTokenizer(cfg.vocab_size,
                                                                 cfg.context_length))
  model, _ = hvl.build_model(config, datasets.class_names(config), clip)
  return model


def test_the_base_config_is_the_dataclasses_defaults():
  """One source per default: each subtree of configs/base.py holds exactly its dataclass's
  fields, at their defaults; a subtree without a field (a run's config from before the field
  existed) takes the default, and a key the dataclass lacks is named with its path."""
  config = base.get_config()
  assert set(config.keys()) == set(SUBTREES) | {'evals', 'seed', 'resume', 'init'}
  for name, cls in SUBTREES.items():
    assert config_tree.build(cls, config[name], name) == cls(), name
  evals = {name: config_tree.build(EvalConfig, spec, name) for name, spec in config.evals.items()}
  assert evals == {'val': EvalConfig(kind='miou', strips=4),
                   'open_vocabulary': EvalConfig(kind='open_vocabulary')}
  tree = config.model.to_dict()
  del tree['decoder']['remat'], tree['hidden_dim']
  built = config_tree.build(hvl.ModelConfig, tree, 'model')
  assert (built.decoder.remat, built.hidden_dim) == ('nothing_saveable', 256)
  tree['decoder']['layerz'] = 3
  with pytest.raises(
      ValueError, match=r'model\.decoder\.layerz: no such config field \(the fields of '
      r'model\.decoder are layers, heads, '):
    config_tree.build(hvl.ModelConfig, tree, 'model')
  # The fields the network fills in are not settings.
  assert 'num_classes' not in config.loss.supervised and 'num_levels' not in config.loss.supervised


def test_every_table_1_row_has_a_config():
  assert len(DATASET_CONFIGS) == len(base.PAPER_MIOU) == 20
  for (name, labels) in base.PAPER_MIOU:
    assert f'{name}_{labels}' in DATASET_CONFIGS


@pytest.mark.parametrize('name', DATASET_CONFIGS)
@pytest.mark.parametrize('backbone', ['clip', 'eva02l'])
def test_dataset_configs_build(name, backbone):
  config = importlib.import_module(f'configs.{name}').get_config(backbone)
  model = build(config)
  dataset, labels = name.rsplit('_', 1)
  assert config.data.name == dataset and config.data.split == base.PAPER_MIOU[dataset,
                                                                              int(labels)][0]
  assert model.cfg.num_classes == base.DATASETS[dataset]['num_classes']
  assert model.cfg.clip.vision_type == ('eva02' if backbone == 'eva02l' else 'vit')
  assert config.data.crop_size % model.cfg.clip.patch_size == 0
  # The shipped split lists exist for every config.
  assert os.path.isdir(os.path.join(datasets.splits_dir(config), datasets.spec(dataset).folder,
                                    config.data.split))


@pytest.mark.parametrize('variant', sorted(ablations.VARIANTS))
def test_ablations_build(variant):
  config = ablations.get_config(f'{variant},1464')
  model = build(config)
  assert config.data.split == '1464'
  flat = config.to_dict()
  for field, value in ablations.VARIANTS[variant].items():
    node = flat
    for key in field.split('.'):
      node = node[key]
    assert node == value, field
  # Every module config is its subtree, field by field.
  assert model.cfg.pixel_decoder.ptrm == config.model.pixel_decoder.ptrm
  assert model.cfg.decoder.instance_queries == config.model.decoder.instance_queries
  assert model.cfg.decoder.query_refinement == config.model.decoder.query_refinement
  assert model.cfg.relevance.mode == config.model.relevance.mode
  loss = objective.objective_config(config, model.cfg)
  assert (loss.prompt.weight, loss.vision_language.mask,
          loss.vision_language.align) == (config.loss.prompt.weight,
                                          config.loss.vision_language.mask,
                                          config.loss.vision_language.align)


@pytest.mark.parametrize('name', ['demo', 'demo_supervised', 'demo_open_vocabulary'])
def test_demo_configs_build(name):
  config = importlib.import_module(f'configs.{name}').get_config()
  assert build(config).cfg.num_classes == config.data.num_classes


@pytest.mark.parametrize('arg', ['clip', 'eva02l', 'tiny'])
def test_folder_configs_build_from_the_folder(arg, tmp_path):
  folder_dataset.make(str(tmp_path))
  config = folder.get_config(arg)
  with config.unlocked():
    config.data.root = str(tmp_path)
  config = datasets.resolved(config)
  model = build(config)
  assert model.cfg.num_classes == 4 and model.cfg.background_classes == (0,)
  assert config.data.crop_size % model.cfg.clip.patch_size == 0
  assert model.cfg.clip.vision_type == ('eva02' if arg == 'eva02l' else 'vit')


def test_benchmark_variants_build():
  config = base.dataset_config('voc', 92)
  for name, c in train_step.variants(config, GPU_SUITE_VARIANTS):
    assert build(c).cfg is not None, name


def test_semivl_geometry_per_dataset():
  geometry = {
      name: (c.data.img_scale, c.inference.protocol, c.inference.short_side, c.inference.stride,
             c.data.crop_size) for name in ('voc', 'ade', 'coco', 'cityscapes')
      for c in [base.dataset_config(name, min(n for d, n in base.PAPER_MIOU if d == name))]
  }
  assert geometry == {'voc': ((2048, 512), 'zegclip_sliding_window', 512, 426, 512),
                      'ade': ((2048, 512), 'zegclip_sliding_window', 512, 426, 512),
                      'coco': ((), 'zegclip_sliding_window', 0, 426, 512),
                      'cityscapes': ((), 'sliding_window', 0, 0, 800)}


def test_overrides_name_the_field():
  config = base.get_config()
  base.with_overrides(
      config, {'optim.lr': 2e-4, 'model.pixel_decoder.ptrm': False, 'model.out_layers': (1, 2, 3)})
  assert config.optim.lr == 2e-4 and config.model.pixel_decoder.ptrm is False
  assert config.model.out_layers == (1, 2, 3)
  with pytest.raises(ValueError, match="no field 'optim.lrr'"):
    base.with_overrides(config, {'optim.lrr': 1.0})
  with pytest.raises(ValueError, match="optim.lr: 'fast' does not fit"):
    base.with_overrides(config, {'optim.lr': 'fast'})
  assert not config.is_locked
  assert [base.parse_value(t) for t in ('true', 'False', '3', '2e-4', '(1, 2)', 'dense')] == [
      True, False, 3, 2e-4, (1, 2), 'dense']


def test_bad_values_are_refused_where_the_config_is_read():
  for field, value, message in [
      ('model.queries', 'fancy', 'model.queries'),
      ('model.relevance.mode', 'local', 'model.relevance.mode'),
      ('model.relevance.gating', 'medium', 'model.relevance.gating'),
      ('model.decoder.remat', 'some', 'model.decoder.remat'),
      ('model.compute.attention_impl', 'flash', 'model.compute.attention_impl'),
      ('model.compute.dtype', 'float8', 'model.compute.dtype'),
      ('model.htqg.levels', 0, 'model.htqg'),
      ('model.decoder.instance_queries', -1, 'model.decoder.instance_queries')
  ]:
    with pytest.raises(ValueError, match=message):
      build(base.with_overrides(base.dataset_config('voc', 92), {field: value}))
  with pytest.raises(ValueError, match='no split of voc with 93'):
    base.dataset_config('voc', 93)
  with pytest.raises(ValueError, match="config argument 'eva'"):
    base.dataset_config('voc', 92, 'eva')


@pytest.mark.parametrize('args,message', [
    (['--config', 'configs/demo.py', '--config.optim.lrr=1'
     ], "error: the config has no field 'lrr' (did you mean 'lr'?)"),
    (['--config', 'configs/demo.py', '--config.model.ptrm=False'
     ], "error: the config has no field 'model.ptrm'"),
    (['--config', 'configs/demo.py', '--config.optim.lr=fast'
     ], 'error: flag --config.optim.lr=fast'),
    (['--config', 'configs/nothere.py'], 'error: --config configs/nothere.py: no such config file'),
    (['--config', 'configs/ablations.py:nope'], "unknown ablation 'nope'"),
    (['--config', 'configs/voc_92.py', '--config.model.clip.pretrained=/no/clip'
     ], 'error: /no/clip: no such'),
    ([
        '--config', 'configs/demo.py', '--config.data.name=voc', '--config.data.num_classes=21',
        '--config.data.root=/no/voc'
    ], "error: data.root='/no/voc': dataset root directory not found"),
    (['--config', 'configs/folder.py:tiny'], "error: data.root='': dataset folder not found"),
    (['--config', 'configs/folder.py', '--config.data.root=/no/mine'
     ], "error: data.root='/no/mine': dataset folder not found"),
])
def test_command_line_mistakes_end_in_one_line(tmp_path, args, message):
  out = subprocess.run([sys.executable, '-m', 'hvl_jax.main', '--workdir',
                        str(tmp_path)] + args, cwd=ROOT, capture_output=True, text=True)
  assert out.returncode != 0
  last = out.stderr.strip().splitlines()[-1]
  assert message in last and 'Traceback' not in out.stderr, out.stderr
