"""Solvers with the paper's hyperparameters (Section 3, first paragraph).

The batch size (64) is the Data layer's, in the net. The paper does not give
gamma (Caffe's usual 0.1 is used), the iteration count, the test schedule or
the seed; their defaults here are documented in docs/nets.md.
"""
from nets.catalog import WEIGHT_DECAY
from runtime.caffe_env import import_caffe

PAPER_SOLVER = {
    "type": "SGD",
    "base_lr": 1e-2,
    "momentum": 0.9,
    "weight_decay": WEIGHT_DECAY,
    "lr_policy": "step",
    "stepsize": 4000,
    "gamma": 0.1,
}
# Ours, where the paper is silent: three learning-rate steps, a fixed seed.
DEFAULT_MAX_ITER = 12000
DEFAULT_TEST_ITER = 72        # 72 x 50 = 3600 >= FER2013's 3589 PublicTest images
DEFAULT_TEST_INTERVAL = 500
DEFAULT_SNAPSHOT = 2000
DEFAULT_DISPLAY = 20
DEFAULT_RANDOM_SEED = 2019


def solver(train_net_path, snapshot_prefix, max_iter=DEFAULT_MAX_ITER, test_iter=DEFAULT_TEST_ITER,
           test_interval=DEFAULT_TEST_INTERVAL, **overrides):
    """A caffe_pb2.SolverParameter for the train/val net at ``train_net_path``.

    ``overrides`` are SolverParameter fields (e.g. base_lr=1e-3, snapshot=0,
    solver_mode="GPU"); an unknown field is an error. solver_mode is left
    unset by default so that ``caffe train`` runs on the CPU unless given
    ``-gpu``. Paths are written as given.
    """
    caffe_pb2 = import_caffe().proto.caffe_pb2
    param = caffe_pb2.SolverParameter()
    fields = {
        "net": str(train_net_path),
        "test_iter": [int(test_iter)],
        "test_interval": int(test_interval),
        **PAPER_SOLVER,
        "max_iter": int(max_iter),
        "display": DEFAULT_DISPLAY,
        "average_loss": DEFAULT_DISPLAY,
        "snapshot": DEFAULT_SNAPSHOT,
        "snapshot_prefix": str(snapshot_prefix),
        "random_seed": DEFAULT_RANDOM_SEED,
    }
    known = {field.name for field in param.DESCRIPTOR.fields}
    for key, value in overrides.items():
        if key not in known:
            raise ValueError(f"solver(): {key!r} is not a SolverParameter field "
                             "(see caffe.proto's SolverParameter for the names)")
        fields[key] = value
    for key, value in fields.items():
        if key == "solver_mode" and isinstance(value, str):
            value = caffe_pb2.SolverParameter.SolverMode.Value(value)
        if isinstance(value, list):
            getattr(param, key).extend(value)
        else:
            setattr(param, key, value)
    return param
