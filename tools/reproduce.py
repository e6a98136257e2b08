"""Reproduce one of the paper's tables or figures: run every cell, then write it beside the paper.

    python tools/reproduce.py --table 3 --data fer2013=data/prepared/fer2013-112 \
        --data fer2013=data/prepared/fer2013-224 [--scale paper|cpu|smoke] [--seeds 3] \
        [--nets cnn48] [--variants softmax l2] [--jobs 2 | --gpus 0,1 | --cluster slurm] [--dry-run]

Tables 2-16 and figures fig8, fig9 (experiments/paper/tables.py says which runs fill
each). ``--data NAME=FOLDER`` maps the paper's databases (fer2013, ckplus,
oulu, mmi) to prepared folders; give a name once per image size the table's
nets need (ResNet 112, VGG 224, toy and cnn48 48). Finished runs and folds are
reused, so the command resumes a killed table. Results: table_<N>.md/.csv/.json
and plots in --out (default <runs-dir>/table_<N>/).
"""
import argparse
import sys
from pathlib import Path

from experiments.running import reproduce
from experiments.running.initialisation import INITS, plan
from experiments.running.options import option_specs
from experiments.running.reproduce import RECIPE_TAGS
from experiments.reporting.table_report import cell_results, write_table
from experiments.paper.tables import TABLES
from nets.catalog import NETS, SPARSENESS_NORMALIZATION, SPARSENESS_NORMALIZATIONS, VARIANTS
from runtime.caffe_env import REPO_ROOT
from tools.command import command_errors
from tools.training_args import refused_options_exit


def _data_pair(text):
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=FOLDER, e.g. fer2013=data/prepared/fer2013-112")
    return name, Path(folder).expanduser()


def _positive(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number >= 1")
    return int(text)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True, choices=list(TABLES), help="table number or fig8/fig9")
    parser.add_argument("--data", type=_data_pair, action="append", default=[],
                        help="NAME=FOLDER: a prepared dataset for the paper's database NAME (repeatable)")
    parser.add_argument("--scale", choices=sorted(reproduce.SCALES), default="paper",
                        help="solver preset: " + "; ".join(f"{s.name}: {s.note}"
                                                           for s in reproduce.SCALES.values()))
    parser.add_argument("--seeds", type=_positive, default=1,
                        help="runs per cell, solver seeds 1..N (default 1)")
    parser.add_argument("--nets", nargs="+", choices=sorted(NETS), default=None,
                        help="run the table with these nets instead of its own (e.g. cnn48 on a CPU)")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=None,
                        help="only these columns (variants) of the table")
    parser.add_argument("--sparseness-normalization", nargs="+", choices=SPARSENESS_NORMALIZATIONS,
                        default=[SPARSENESS_NORMALIZATION], dest="normalizations",
                        help="the feature-sparseness term over the batch: batch (default) and/or sum; "
                             "with both, every sparseness cell runs twice, so that one table shows which "
                             "reading reproduces the paper (docs/recipe.md)")
    parser.add_argument("--init", choices=INITS, default="auto",
                        help="where runs without a parent run start: auto (default: each net's public face "
                        "model when every net of the table that has one finds it, else random weights), "
                        "face (require them) or random; CK+/Oulu/MMI cells fine-tune from the FER2013 run "
                        "(docs/recipe.md)")
    parser.add_argument("--pretrained-dir", type=Path, default=None,
                        help="where tools/fetch_pretrained.py put the face models (default: its --dest default)")
    recipe = parser.add_argument_group("training options for every run of the table (default: the "
                                       "nets' defaults; each set one tags the run names)")
    specs = option_specs()
    for name in RECIPE_TAGS:
        spec = specs[name]
        recipe.add_argument(spec.flag, dest=name, type=None if spec.choices else spec.kind,
                            choices=spec.choices, default=None, help=spec.help)
    parser.add_argument("--runs-dir", type=Path, default=REPO_ROOT / "runs" / "reproduce",
                        help="where run folders go (default <repo>/runs/reproduce)")
    parser.add_argument("--out", type=Path, default=None, help="where the table goes")
    parallel = parser.add_mutually_exclusive_group()
    parallel.add_argument("--jobs", type=_positive, default=1, help="runs side by side on the CPU")
    parallel.add_argument("--gpus", default=None, help="comma-separated GPU ids, one caffe train on each")
    parallel.add_argument("--cluster", choices=("slurm", "local"), default=None,
                          help="submit the runs with submitit (local: its local executor)")
    parser.add_argument("--cluster-folder", type=Path, default=None,
                        help="submitit's log folder (default <runs-dir>/submitit)")
    parser.add_argument("--dry-run", action="store_true", help="list the cells and their commands only")
    return parser.parse_args(argv)


def cluster_executor(kind, folder):
    import submitit  # only needed for --cluster
    executor = submitit.AutoExecutor(folder=folder) if kind == "slurm" else submitit.LocalExecutor(folder=folder)
    # One run per job; Python layers keep a run on one GPU.
    executor.update_parameters(timeout_min=24 * 60, **({"gpus_per_node": 1} if kind == "slurm" else {}))
    return executor


def main(argv=None):
    args = parse_args(argv)
    with command_errors(__file__, argv, kept="every finished run and the interrupted runs' finished folds "
                        "and newest snapshots under the runs folder"), refused_options_exit():
        return _reproduce(args)


def _reproduce(args):
    table = TABLES[args.table]
    scale = reproduce.SCALES[args.scale]
    cells = reproduce.select_cells(table, args.nets, args.variants, tuple(dict.fromkeys(args.normalizations)))
    seeds = list(range(1, args.seeds + 1))
    face_models = plan({cell.net for cell in cells}, args.init, args.pretrained_dir)
    recipe = tuple((name, getattr(args, name)) for name in RECIPE_TAGS if getattr(args, name) is not None)
    jobs = reproduce.jobs_for(cells, seeds, face_models, recipe)
    folders = reproduce.data_folders(args.data) if not args.dry_run else _existing_folders(args.data)
    print(f"Table {table.number}: {table.title}; {len(cells)} cell(s) x {len(seeds)} seed(s) = "
          f"{len(jobs)} run(s), scale {scale.name} ({scale.note})")
    if args.dry_run:
        for cell in cells:
            print(f"  cell {cell.row} / {cell.column}: {cell.kind} {cell.net} {cell.variant} on {cell.data}"
                  + (f" -> {cell.test}" if cell.test else "")
                  + (f" (paper {cell.paper:.2f})" if cell.paper is not None else "")
                  + f"; starts from {reproduce.job_of(cell, 1, face_models, recipe).starts_from(scale.name)}")
        for job in jobs:
            print("  " + reproduce.job_command(job, scale, args.runs_dir, folders))
        return jobs
    needed = {cell.data for cell in cells} | {c.finetune_from for c in cells if c.finetune_from} | {
        d for c in cells if c.kind == "crossdb" for d in reproduce.DATABASES if d != c.data}
    missing = sorted(needed - set(folders))
    if missing:
        raise SystemExit(f"reproduce.py: error: table {table.number} needs prepared datasets for "
                         f"{', '.join(missing)}; pass --data NAME=FOLDER for each (prepare them with "
                         "data_prep/prepare.py)")
    reproduce.check_jobs(jobs, scale, folders)
    executor = cluster_executor(args.cluster, args.cluster_folder or args.runs_dir / "submitit") \
        if args.cluster else None
    gpus = [int(g) for g in args.gpus.split(",")] if args.gpus else None
    done = reproduce.run_jobs(jobs, scale, args.runs_dir, args.data, parallel=args.jobs, gpus=gpus,
                              executor=executor)
    run_dirs_of = lambda cell: [done[reproduce.job_of(cell, seed, face_models, recipe)] for seed in seeds]
    reproduce.store_table_analyses(table, [run_dir for cell in cells for run_dir in run_dirs_of(cell)])
    rows = cell_results(table, cells, run_dirs_of,
                        lambda cell: reproduce.job_of(cell, 1, face_models, recipe).starts_from(scale.name))
    reference = reproduce.reference_net(list(table.cells)) if args.nets else None
    path = write_table(table, rows, args.out or args.runs_dir / f"table_{table.number}",
                       [reproduce.job_command(job, scale, args.runs_dir, folders) for job in jobs],
                       scale, reference=reference)
    print(f"table: {path}")
    return path


def _existing_folders(pairs):
    return reproduce.data_folders([(n, f) for n, f in pairs if (Path(f) / "manifest.json").is_file()])


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
