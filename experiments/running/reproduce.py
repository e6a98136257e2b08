"""Run every cell of one of the paper's tables and write it beside the paper's numbers.

A table (experiments/paper/tables.py) is a list of cells; each cell is run ``seeds``
times as separate run folders under ``runs_dir`` (named
``<data>_<net>_<variant>_<scale>_s<seed>``, crossdb ``crossdb_<data>_...``),
through the same library functions as tools/crossval.py and tools/crossdb.py,
so finished folds and runs are reused and a killed table resumes where it
stopped. Jobs run in a stable order; with ``jobs > 1`` or several GPUs they run
side by side in separate processes (one ``caffe train`` per GPU), or through a
cluster scheduler (submitit), the run folder being the only shared state.
"""
import shlex
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from data_prep.prepared import PreparedDataset
from experiments.analysis.respond_ratio import run_respond_ratio
from experiments.errors import ExperimentError
from experiments.running.crossdb import check_run as check_crossdb_run, run_crossdb
from experiments.running.crossval import chosen_splits, check_run as check_crossval_run, run_crossval
from experiments.running.options import OptionError, TrainingOptions, option_specs
from experiments.running.run_folder import RESPOND_RATIO, read_summary, trained_snapshot
from experiments.paper.tables import DATABASES
from nets.catalog import NETS, SPARSENESS_NORMALIZATION, VARIANTS


class ReproduceError(ExperimentError):
    """A table that cannot be run as asked (no such cell, an unfinished parent run)."""


@dataclass(frozen=True)
class Scale:
    """A solver preset; None keeps the paper's value (nets/solvers.py)."""
    name: str
    iters: Optional[int]
    stepsize: Optional[int]
    batch_size: Optional[int]
    note: str


SCALES = {
    "paper": Scale("paper", None, None, None,
                   "the paper's solver: batch 64, base_lr 0.01, 12,000 iterations, step 4,000"),
    # A sixth of the paper's iterations with the step scaled alike (three steps
    # before the end, as the paper's 4,000 of 12,000): about 5 min per cell for
    # the cnn48 net on 2 CPU cores, seconds for the toy net.
    "cpu": Scale("cpu", 2100, 700, None, "2,100 iterations, step 700 (1/6 of the paper's schedule)"),
    # For tests and a first look: a few iterations only.
    "smoke": Scale("smoke", 30, 10, 16, "30 iterations at batch 16 (tests only: not a result)"),
}


# The training options a table may set for all its runs, and their tags in run names.
RECIPE_TAGS = {"transferred_lr_mult": "tlr", "center_lr_mult": "clr", "center_filler": "cf",
               "center_filler_std": "cfs", "center_decay_mult": "cdm"}


@dataclass(frozen=True)
class Job:
    """One run: a cell's (kind, net, variant, data, sparseness normalisation) for one seed, the face
    model its chain starts from (experiments/running/initialisation.py; None: random weights) and
    the table-wide training options (``recipe``: sorted (option, value) pairs of RECIPE_TAGS)."""
    kind: str
    net: str
    variant: str
    data: str
    seed: int
    finetune_from: Optional[str] = None
    normalization: str = SPARSENESS_NORMALIZATION
    face_model: Optional[str] = None
    recipe: tuple = ()

    def run_name(self, scale):
        stem = f"{self.data}_{self.net}_{self.variant}_{scale}_s{self.seed}"
        if self.normalization != SPARSENESS_NORMALIZATION:
            stem += f"_{self.normalization}"
        stem += "".join(f"_{RECIPE_TAGS[name]}{value}" for name, value in self.recipe)
        if self.face_model:
            stem += "_face"          # the chain starts from a public face model
        if self.kind == "crossdb":
            return f"crossdb_{stem}"
        return stem + (f"_from_{self.finetune_from}" if self.finetune_from else "")

    def parent(self):
        """The job whose final snapshot this one fine-tunes from, or None."""
        if not self.finetune_from:
            return None
        return Job("crossval", self.net, self.variant, self.finetune_from, self.seed,
                   normalization=self.normalization, face_model=self.face_model, recipe=self.recipe)

    def starts_from(self, scale):
        """Where this run's weights start, in words (the table's "starts from" column)."""
        if self.parent():
            return f"the {self.finetune_from} run {self.parent().run_name(scale)}"
        return f"face model {Path(self.face_model).name}" if self.face_model else "random weights"


def job_of(cell, seed, face_models=None, recipe=()):
    """The run that fills ``cell`` for ``seed`` (``face_models``: initialisation.plan's {net: path})."""
    return Job(cell.kind, cell.net, cell.variant, cell.data, seed, cell.finetune_from, cell.normalization,
               (face_models or {}).get(cell.net), tuple(sorted(recipe)))


def reference_net(cells):
    """The net whose paper numbers stand beside a substituted net: ResNet where the table has it."""
    return "resnet" if any(cell.net == "resnet" for cell in cells) else cells[0].net


def select_cells(table, nets=None, variants=None, normalizations=(SPARSENESS_NORMALIZATION,)):
    """The table's cells, with only ``variants`` kept and its nets replaced by ``nets`` (e.g. cnn48
    on a CPU); a replaced cell keeps the reference net's paper number. Each cell of a
    feature-sparseness variant is run once per sparseness ``normalizations`` (batch, sum:
    docs/recipe.md); a cell of another normalisation than batch is labelled "<column> (sum)"."""
    cells = [cell for cell in table.cells if not variants or cell.variant in variants]
    if not cells:
        raise ReproduceError(f"table {table.number} has no cell of variant(s) {', '.join(variants)}; "
                             f"its variants: {', '.join(sorted({c.variant for c in table.cells}))}")
    if nets:
        base = [cell for cell in cells if cell.net == reference_net(cells)]
        cells = [replace(cell, net=net, row=net if cell.row == cell.net else cell.row)
                 for net in nets for cell in base]
    return [replace(cell, normalization=normalization,
                    column=cell.column if normalization == SPARSENESS_NORMALIZATION
                    else f"{cell.column} ({normalization})")
            for cell in cells for normalization in normalizations
            if normalization == SPARSENESS_NORMALIZATION or VARIANTS[cell.variant].sparseness]


def jobs_for(cells, seeds, face_models=None, recipe=()):
    """Every run the cells need, parents first, each once, in a stable order."""
    jobs = []
    for seed in seeds:
        for cell in cells:
            job = job_of(cell, seed, face_models, recipe)
            for needed in (job.parent(), job):
                if needed is not None and needed not in jobs:
                    jobs.append(needed)
    return jobs


def data_folders(pairs):
    """{name: [PreparedDataset, ...]} from NAME=FOLDER pairs (a name may have folders of several sizes).

    NAME must be one of the paper's databases and the folder's manifest must say it
    holds that database (a table's cell would otherwise stand beside another
    database's paper number); else OptionError.
    """
    folders = {}
    for name, folder in pairs:
        if name not in DATABASES:
            raise OptionError(f"--data {name}={folder}: {name!r} is not one of the paper's databases; "
                              f"name it {', '.join(DATABASES)}")
        dataset = PreparedDataset.open(folder)
        if dataset.name != name:
            raise OptionError(f"--data {name}={folder}: that folder holds the {dataset.name} database "
                              f"(its manifest.json), not {name}; pass --data {dataset.name}={folder}, "
                              f"or a folder prepared with --dataset {name}")
        folders.setdefault(name, []).append(dataset)
    return folders


def dataset_for(folders, name, net):
    """The prepared folder of database ``name`` at ``net``'s input size (OptionError if none)."""
    size = NETS[net].input_size
    for dataset in folders.get(name, []):
        if dataset.image_size == size:
            return dataset
    have = ", ".join(f"{d.root} ({d.image_size} px)" for d in folders.get(name, [])) or "none"
    raise OptionError(
        f"the {net} net needs {name} prepared at {size}x{size} (the stored size must equal the net's "
        f"input); given: {have}. Prepare it with `python data_prep/prepare.py --dataset {name} --root ... "
        f"--size {size} --out data/prepared/{name}-{size}` and pass --data {name}=data/prepared/{name}-{size}")


def check_jobs(jobs, scale, folders):
    """Refuse, before any run starts, a job whose data or options do not fit (OptionError)."""
    for job in jobs:
        options = options_for(job, scale)
        train_set = dataset_for(folders, job.data, job.net)
        if job.kind == "crossdb":
            tests = [dataset_for(folders, d, job.net) for d in DATABASES if d != job.data]
            check_crossdb_run(train_set, tests, options)
        else:
            check_crossval_run(train_set, options, chosen_splits(train_set))


def options_for(job, scale, weights=None):
    normalization = None if job.normalization == SPARSENESS_NORMALIZATION else job.normalization
    if weights is None and job.parent() is None and job.face_model:
        weights = job.face_model
    return TrainingOptions(net=job.net, variant=job.variant, iters=scale.iters, batch_size=scale.batch_size,
                           stepsize=scale.stepsize, weights=weights, seed=job.seed, scale=scale.name,
                           sparseness_normalization=normalization, **dict(job.recipe))


def job_command(job, scale, runs_dir, folders):
    """The tools/ command line equivalent to ``job`` (for --dry-run and the report)."""
    def folder(name):
        try:
            return str(dataset_for(folders, name, job.net).root)
        except OptionError:
            return f"<{name} at {NETS[job.net].input_size} px>"
    flag = {name: spec.flag for name, spec in option_specs().items()}
    common = [f"{flag['net']} {job.net}", f"{flag['variant']} {job.variant}", f"{flag['seed']} {job.seed}",
              f"{flag['scale']} {scale.name}", f"--runs-dir {shlex.quote(str(runs_dir))}",
              f"--name {job.run_name(scale.name)}"]
    if scale.iters:
        common.append(f"{flag['iters']} {scale.iters} {flag['stepsize']} {scale.stepsize}")
    if scale.batch_size:
        common.append(f"{flag['batch_size']} {scale.batch_size}")
    if job.normalization != SPARSENESS_NORMALIZATION:
        common.append(f"{flag['sparseness_normalization']} {job.normalization}")
    common.extend(f"{flag[name]} {value}" for name, value in job.recipe)
    if job.parent() is None and job.face_model:
        common.append(f"{flag['weights']} {shlex.quote(job.face_model)}")
    if job.parent():
        common.append(f"{flag['weights']} {runs_dir}/{job.parent().run_name(scale.name)}/official/"
                      "snapshot_iter_N.caffemodel")
    if job.kind == "crossdb":
        tests = " ".join(folder(d) for d in DATABASES if d != job.data)
        return f"python tools/crossdb.py --train-data {folder(job.data)} --test-data {tests} " + " ".join(common)
    return f"python tools/crossval.py --data {folder(job.data)} " + " ".join(common)


def run_job(job, scale, runs_dir, folders, gpu=None):
    """Run (or reuse) one job; returns its run folder."""
    runs_dir = Path(runs_dir)
    weights = None
    if job.parent():
        parent_dir = runs_dir / job.parent().run_name(scale.name)
        if read_summary(parent_dir) is None:
            raise ReproduceError(f"{job.run_name(scale.name)} fine-tunes from {parent_dir}, "
                                 "which is not finished")
        weights = trained_snapshot(parent_dir / read_summary(parent_dir)["folds"][0])
    options = options_for(job, scale, weights)
    name = job.run_name(scale.name)
    if job.kind == "crossdb":
        tests = [dataset_for(folders, d, job.net).root for d in DATABASES if d != job.data]
        run_crossdb(dataset_for(folders, job.data, job.net).root, tests, options, runs_dir, name=name, gpu=gpu)
    else:
        run_crossval(dataset_for(folders, job.data, job.net).root, options, runs_dir, name=name, gpu=gpu)
    return runs_dir / name


def store_table_analyses(table, run_dirs):
    """Compute what the table reports beyond the runs' own files, once, into the run folders:
    RespondRatio (respond_ratio.json) for a RespondRatio table (Table 2)."""
    if table.measure == "respond_ratio":
        for run_dir in run_dirs:
            if not (Path(run_dir) / RESPOND_RATIO).is_file():
                run_respond_ratio(run_dir)


def _run_job_in_child(job, scale, runs_dir, pairs, gpu):
    return run_job(job, scale, runs_dir, data_folders(pairs), gpu=gpu)


def run_jobs(jobs, scale, runs_dir, pairs, parallel=1, gpus=None, executor=None):
    """Run ``jobs``: one after another, side by side, or through ``executor`` (submitit-like).

    Jobs whose parent is among ``jobs`` wait for it: they run in a second wave.
    Returns {job: run folder}.
    """
    folders = data_folders(pairs)
    waves = [[j for j in jobs if j.parent() not in jobs], [j for j in jobs if j.parent() in jobs]]
    done = {}
    with tqdm(total=len(jobs), desc="cells", unit="run") as bar:
        for wave in waves:
            if executor is not None:
                submitted = [(job, executor.submit(_run_job_in_child, job, scale, runs_dir, pairs, None))
                             for job in wave]
                for job, future in submitted:
                    done[job] = future.result()
                    bar.update(1)
            elif parallel <= 1 and not gpus:
                for job in wave:
                    bar.set_postfix_str(job.run_name(scale.name))
                    done[job] = run_job(job, scale, runs_dir, folders)
                    bar.update(1)
            else:
                # One worker per slot, each running its share in order: one caffe train per GPU.
                slots = list(gpus) if gpus else [None] * parallel
                shares = [wave[index::len(slots)] for index in range(len(slots))]
                with ProcessPoolExecutor(len(slots), mp_context=get_context("spawn")) as pool:
                    futures = [pool.submit(_run_share, share, scale, runs_dir, pairs, slot)
                               for share, slot in zip(shares, slots) if share]
                    for future in futures:
                        for job, run_dir in future.result():
                            done[job] = run_dir
                            bar.update(1)
    return done


def _run_share(jobs, scale, runs_dir, pairs, gpu):
    folders = data_folders(pairs)
    return [(job, run_job(job, scale, runs_dir, folders, gpu=gpu)) for job in jobs]
