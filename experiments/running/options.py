"""The training options of a run, each defined once, and the checks made before any work starts.

Every field of ``TrainingOptions`` carries its own ``Option``: the command-line
flag (and the old spellings still accepted), the help text, the value's type
and rule, and whether it is recorded in the run's ``config.json`` (under the
field's name). tools/training_args.py builds the parsers of tools/crossval.py
and tools/crossdb.py from these; ``TrainingOptions`` checks its values against
them when it is made; ``config()`` writes the config.json keys and
``from_config`` reads them back, so a run can be re-created from its own folder.
A field left None takes the paper's value (nets/).

``check_data`` checks the options against the prepared data (image size against
the net's input, classes, batch against the training set). Both raise
``OptionError`` before a run folder is made: tools/ print it and exit 2.
"""
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Optional

from experiments.running.run_folder import CONFIG
from nets.architectures import GEOMETRIES
from nets.build import DEFAULT_BATCH_SIZE
from caffe_layers.center_loss import CENTER_FILLERS
from nets.catalog import (CENTER_DECAY_MULT, CENTER_FILLER, NETS, SPARSENESS_NORMALIZATIONS,
                          VARIANTS)
from runtime.files import read_json


class OptionError(ValueError):
    """A training option, or an option against the data, that is refused before any work starts."""


@dataclass(frozen=True)
class Option:
    """How one training option is given, checked and recorded.

    flag: the command-line flag; renamed_from: earlier flags, still accepted
    with a line saying what replaced them. kind: the value's type (int, float,
    str, Path). rule: a predicate on a given value and the rule it states, for
    the message. choices: the allowed values. in_config: recorded in
    config.json (False for what does not change what is trained).
    """
    flag: str
    help: str
    kind: type = str
    rule: Optional[Callable] = None
    rule_text: str = ""
    choices: Optional[tuple] = None
    renamed_from: tuple = ()
    in_config: bool = True
    required: bool = False


def _positive(value):
    return value >= 1


def _not_negative(value):
    return value >= 0


def _option(flag, help, kind=str, rule=None, rule_text="", choices=None, renamed_from=(),
            in_config=True, required=False):
    spec = Option(flag=flag, help=help, kind=kind, rule=rule, rule_text=rule_text,
                  choices=tuple(choices) if choices else None, renamed_from=tuple(renamed_from),
                  in_config=in_config, required=required)
    if required:
        return field(metadata={"option": spec})
    return field(default=None, metadata={"option": spec})


@dataclass(frozen=True)
class TrainingOptions:
    """Net, variant and the solver settings a run is defined by (None: the paper's value)."""
    net: str = _option("--net", "network", choices=sorted(NETS), required=True)
    variant: str = _option("--variant", "loss / regulariser variant (see docs/nets.md)",
                           choices=sorted(VARIANTS), required=True)
    iters: Optional[int] = _option(
        "--iters", "training iterations (default: the solver's max_iter, the paper's 12,000)",
        int, _positive, "a positive iteration count")
    batch_size: Optional[int] = _option(
        "--batch-size", f"training batch size (default: the paper's {DEFAULT_BATCH_SIZE}; at most the "
        "training set's records)", int, _positive, "a positive count of images")
    base_lr: Optional[float] = _option(
        "--base-lr", "base learning rate (default: the paper's 0.01)", float, lambda v: v > 0,
        "a learning rate above 0")
    stepsize: Optional[int] = _option(
        "--stepsize", "iterations between learning-rate steps (default: the paper's 4000)", int,
        _positive, "a positive iteration count")
    weights: Optional[Path] = _option(
        "--weights", "pretrained .caffemodel to fine-tune from (caffe train -weights)", Path,
        lambda v: Path(v).is_file(), "an existing .caffemodel file")
    seed: Optional[int] = _option(
        "--solver-seed", "the solver's random_seed (default: the solver's 2019); recorded in config.json "
        "as seed, one run folder per seed (the folds' split has its own seed, data_prep/prepare.py's)", int,
        _not_negative, "an integer >= 0 (Caffe takes a negative random_seed as 'unseeded')",
        renamed_from=("--seed",))
    transferred_lr_mult: Optional[float] = _option(
        "--transferred-lr-mult", "lr_mult of the transferred trunk MI relative to FC1/FC2 (Eq. 8's "
        "mu_1 / mu_2; default 1: the paper gives no values)", float, _not_negative, "a number >= 0")
    center_lr_mult: Optional[float] = _option(
        "--center-lr-mult", "lr_mult of the center-loss centers: their update rate alpha = base_lr x "
        "this (default 1, as Wen et al.'s released solver files; 50 = their paper's 0.5)", float,
        _not_negative, "a number >= 0")
    center_filler: Optional[str] = _option(
        "--center-filler", "the centers' initialisation: xavier (default, as Wen et al.'s released "
        "face-model configuration), zeros, or gaussian with --center-filler-std",
        choices=CENTER_FILLERS)
    center_filler_std: Optional[float] = _option(
        "--center-filler-std", "std of the centers' gaussian initialisation (with --center-filler "
        "gaussian only)", float, lambda v: v > 0, "a number > 0")
    center_decay_mult: Optional[float] = _option(
        "--center-decay-mult", "decay_mult of the centers (default 2, as Wen et al.'s released "
        "configuration; 0: no weight decay on them)", float, _not_negative, "a number >= 0")
    sparseness_normalization: Optional[str] = _option(
        "--sparseness-normalization", "the feature-sparseness term over the batch: batch (default: "
        "divided by N, like the softmax term) or sum (Eq. 4's plain sum, N times stronger; "
        "docs/recipe.md)", choices=SPARSENESS_NORMALIZATIONS)
    geometry: Optional[str] = _option(
        "--geometry", "face ResNet input geometry: square 112x112 (default; the paper's hidden-unit "
        "count, fc5 re-initialised) or public 112x96 (the public model's, fc5 loads)",
        choices=GEOMETRIES)
    scale: Optional[str] = _option(
        "--scale-label", "a label only: the name of the solver preset the run belongs to, recorded "
        "in config.json as scale (tools/reproduce.py's --scale sets the solver itself)",
        renamed_from=("--scale",))
    snapshot_every: Optional[int] = _option(
        "--snapshot-every", "snapshot interval in iterations, the most a kill loses (default: per net, "
        "about 4 minutes at the paper's solver; see docs/experiments.md)", int, _positive,
        "a positive iteration count", in_config=False)

    def __post_init__(self):
        for name, spec in option_specs().items():
            if spec.kind is Path and isinstance(getattr(self, name), str):
                object.__setattr__(self, name, Path(getattr(self, name)))
            _check_value(spec, getattr(self, name))
        if (self.center_filler == "gaussian") != (self.center_filler_std is not None):
            raise OptionError(
                f"--center-filler {self.center_filler or CENTER_FILLER} with --center-filler-std "
                f"{self.center_filler_std}: the std is the gaussian filler's; give both "
                "--center-filler gaussian and --center-filler-std, or neither")
        if self.geometry == "public" and self.net != "resnet":
            raise OptionError(f"--geometry public is the face ResNet's 112x96 input; the {self.net} "
                              "net has only the square one: leave --geometry out or use --net resnet")

    def config(self):
        """The training settings of a run's config.json (one key per option with in_config).

        A center-loss run records its centers' filler and decay_mult as trained, not None:
        their defaults changed on 2026-12-04 (zeros, 0 -> xavier, 2), so a run folder from
        before is not taken for one at today's defaults.
        """
        config = {name: _to_config(getattr(self, name)) for name, spec in option_specs().items()
                  if spec.in_config}
        if VARIANTS[self.variant].center:
            config["center_filler"] = self.center_filler or CENTER_FILLER
            config["center_decay_mult"] = (CENTER_DECAY_MULT if self.center_decay_mult is None
                                           else self.center_decay_mult)
        return config

    @classmethod
    def from_config(cls, config):
        """The options a run was made with, from its config.json (a dict, the file or its run folder).

        Keys of other owners (tool, data, dataset, ...) are ignored; a key missing
        from an older config.json is an option added since, at its default (None).
        """
        if not isinstance(config, dict):
            path = Path(config)
            config = read_json(path / CONFIG if path.is_dir() else path)
        values = {}
        for name, spec in option_specs().items():
            if spec.in_config and config.get(name) is not None:
                values[name] = spec.kind(config[name]) if spec.kind is Path else config[name]
        return cls(**values)

    def solver_overrides(self):
        overrides = {}
        if self.iters is not None:
            overrides["max_iter"] = self.iters
            # Five test-phase points on the training curves, the last at the end.
            overrides["test_interval"] = max(1, self.iters // 5)
        if self.base_lr is not None:
            overrides["base_lr"] = self.base_lr
        if self.stepsize is not None:
            overrides["stepsize"] = self.stepsize
        if self.seed is not None:
            overrides["random_seed"] = self.seed
        return overrides

    def net_options(self):
        """write_experiment's net options that are set (None: nets' defaults)."""
        options = {"transferred_lr_mult": self.transferred_lr_mult, "center_lr_mult": self.center_lr_mult,
                   "center_filler": self.center_filler, "center_filler_std": self.center_filler_std,
                   "center_decay_mult": self.center_decay_mult,
                   "sparseness_normalization": self.sparseness_normalization, "geometry": self.geometry}
        return {key: value for key, value in options.items() if value is not None}


def option_specs():
    """{field name (= config.json key): Option} of every training option, in field order."""
    return {f.name: f.metadata["option"] for f in fields(TrainingOptions)}


def _to_config(value):
    return str(Path(value).resolve()) if isinstance(value, Path) else value


def _check_value(spec, value):
    if value is None:
        if spec.required:
            raise OptionError(f"{spec.flag} is required: give one of {', '.join(spec.choices)}")
        return
    if spec.kind in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or (spec.kind is int and not isinstance(value, int))):
        raise OptionError(f"{spec.flag} {value!r}: give {'an integer' if spec.kind is int else 'a number'}")
    if spec.choices is not None and value not in spec.choices:
        raise OptionError(f"{spec.flag} {value!r}: choose one of {', '.join(spec.choices)}")
    if spec.rule is not None and not spec.rule(value):
        raise OptionError(f"{spec.flag} {value}: give {spec.rule_text}")


def check_data(options, dataset, flag="--data"):
    """Refuse ``options`` on the prepared ``dataset`` (a PreparedDataset) before any work starts.

    The stored image side must be the net's input (the project's nets are
    defined at that size, docs/nets.md); there must be two classes or more; a
    batch must not exceed the smallest training set of the splits trained on.
    """
    size = NETS[options.net].input_size
    if dataset.image_size != size:
        raise OptionError(
            f"{flag} {dataset.root}: its images are {dataset.image_size}x{dataset.image_size}, but the "
            f"{options.net} net takes {size}x{size} (the stored size must equal the net's input). "
            f"Prepare it again with data_prep/prepare.py --size {size}, or choose a net with a "
            f"{dataset.image_size}-pixel input: "
            + (", ".join(n for n, info in NETS.items() if info.input_size == dataset.image_size) or "none"))
    if dataset.num_classes < 2:
        raise OptionError(f"{flag} {dataset.root}: it holds {dataset.num_classes} class(es) "
                          f"({', '.join(dataset.classes)}); a classifier needs two or more. "
                          "Prepare it with the images of more expressions")


def check_batch(options, records, where):
    """Refuse a batch larger than the ``records`` of the training set (``where``, for the
    message): Caffe would repeat images within one batch."""
    batch = options.batch_size or DEFAULT_BATCH_SIZE
    if batch > records:
        raise OptionError(
            f"--batch-size {batch}{'' if options.batch_size else ' (the default)'}: {where} holds only "
            f"{records} training records, and a batch must not exceed them (Caffe would repeat images "
            f"within a batch). Give --batch-size {records} or less")
