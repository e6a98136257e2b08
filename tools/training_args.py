"""The training options crossval.py and crossdb.py share, as command-line arguments."""
from pathlib import Path

from experiments.running.training import TrainingOptions
from nets.architectures import GEOMETRIES
from nets.experiment import NETS, VARIANTS
from runtime.caffe_env import REPO_ROOT


def add_training_arguments(parser):
    parser.add_argument("--net", required=True, choices=sorted(NETS), help="network")
    parser.add_argument("--variant", required=True, choices=sorted(VARIANTS),
                        help="loss / regulariser variant (see docs/nets.md)")
    parser.add_argument("--iters", type=int, default=None,
                        help="training iterations (default: the solver's max_iter)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="training batch size (default: the paper's 64)")
    parser.add_argument("--base-lr", type=float, default=None,
                        help="base learning rate (default: the paper's 0.01)")
    parser.add_argument("--stepsize", type=int, default=None,
                        help="iterations between learning-rate steps (default: the paper's 4000)")
    parser.add_argument("--weights", type=Path, default=None,
                        help="pretrained .caffemodel to fine-tune from (caffe train -weights)")
    parser.add_argument("--seed", type=int, default=None,
                        help="the solver's random_seed (default: the solver's 2019); recorded in "
                             "config.json, one run folder per seed")
    parser.add_argument("--transferred-lr-mult", type=float, default=None,
                        help="lr_mult of the transferred trunk MI relative to FC1/FC2 (Eq. 8's "
                             "mu_1 / mu_2; default 1: the paper gives no values)")
    parser.add_argument("--center-lr-mult", type=float, default=None,
                        help="lr_mult of the center-loss centers: their update rate alpha = base_lr x this "
                             "(default 1, as Wen et al.'s released solver files; 50 = their paper's 0.5)")
    parser.add_argument("--center-filler-std", type=float, default=None,
                        help="std of the centers' gaussian initialisation (default 0: all zeros)")
    parser.add_argument("--geometry", choices=GEOMETRIES, default=None,
                        help="face ResNet input geometry: square 112x112 (default; the paper's hidden-unit "
                             "count, fc5 re-initialised) or public 112x96 (the public model's, fc5 loads)")
    parser.add_argument("--scale", default=None,
                        help="name of the solver preset the run belongs to (tools/reproduce.py's "
                             "--scale), a label recorded in config.json")
    parser.add_argument("--snapshot-every", type=int, default=None,
                        help="snapshot interval in iterations, the most a kill loses (default: "
                             "per net, about 4 minutes at the paper's solver; see "
                             "docs/experiments.md)")
    parser.add_argument("--gpu", type=int, default=None, help="GPU id (default: CPU)")
    parser.add_argument("--runs-dir", type=Path, default=REPO_ROOT / "runs",
                        help="where run folders go (default: <repo>/runs)")


def training_options(args):
    if args.snapshot_every is not None and args.snapshot_every < 1:
        raise SystemExit(f"error: --snapshot-every {args.snapshot_every}: give a positive "
                         "iteration count")
    if args.transferred_lr_mult is not None and args.transferred_lr_mult < 0:
        raise SystemExit(f"error: --transferred-lr-mult {args.transferred_lr_mult}: give a "
                         "number >= 0")
    if args.geometry == "public" and args.net != "resnet":
        raise SystemExit(f"error: --geometry public is the face ResNet's 112x96 input; the {args.net} net "
                         "has only the square one")
    return TrainingOptions(net=args.net, variant=args.variant, iters=args.iters,
                           batch_size=args.batch_size, base_lr=args.base_lr, stepsize=args.stepsize,
                           weights=args.weights, seed=args.seed,
                           transferred_lr_mult=args.transferred_lr_mult,
                           center_lr_mult=args.center_lr_mult, center_filler_std=args.center_filler_std,
                           geometry=args.geometry, scale=args.scale,
                           snapshot_every=args.snapshot_every)
