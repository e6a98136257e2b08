"""Net and solver generator: the paper's three nets x every variant it compares.

    from nets import NETS, VARIANTS, train_val_net, deploy_net, solver, roles, write_experiment

See docs/nets.md.
"""
from nets.build import NetRoles, deploy_net, deploy_from_test, phase_net, roles, train_val_net
from nets.catalog import NETS, VARIANTS
from nets.experiment import file_names, write_experiment
from nets.solvers import PAPER_SOLVER, solver

__all__ = ["NETS", "VARIANTS", "NetRoles", "PAPER_SOLVER", "deploy_from_test", "deploy_net",
           "file_names", "phase_net", "roles", "solver", "train_val_net", "write_experiment"]
