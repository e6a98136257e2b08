"""Net and solver generator: every net of NETS (the paper's three and cnn48) x every variant.

    from nets import NETS, VARIANTS, experiment_nets, train_val_net, deploy_net, solver, roles,
                     write_experiment

See docs/nets.md.
"""
from nets.build import (BuildOptions, ExperimentNets, NetRoles, deploy_from_test, deploy_net,
                        experiment_nets, phase_net, roles, train_val_net)
from nets.catalog import NETS, VARIANTS
from nets.experiment import file_names, write_experiment
from nets.solvers import PAPER_SOLVER, solver

__all__ = ["NETS", "VARIANTS", "BuildOptions", "ExperimentNets", "NetRoles", "PAPER_SOLVER",
           "deploy_from_test", "deploy_net", "experiment_nets", "file_names", "phase_net", "roles",
           "solver", "train_val_net", "write_experiment"]
