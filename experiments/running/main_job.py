"""The project's main job, end to end on the embedded synthetic dataset.

1. generate the synthetic, licence-free expression dataset and prepare it
   (alignment, crops, gray-level normalisation, person-independent folds, LMDBs);
2. cross-validate the paper's toy network (Section 3.2) with each variant under ``caffe train``;
3. RespondRatio (Eq. 13) of each trained toy network;
4. a Markdown report beside the paper's numbers, followed by any extra
   sections the caller adds (tools/main_job.py adds a predict.py example:
   inference/ sits above experiments/ and is not imported here).

Every step reuses what a previous run finished, so a second run only redoes
what is missing.
"""
import time
from dataclasses import dataclass
from pathlib import Path

from data_prep.prepare import PrepareOptions, prepare_dataset
from data_prep.prepared import MANIFEST, PreparedDataset
from experiments.running.crossval import print_summary, run_crossval
from experiments.reporting.report import build_report
from experiments.analysis.respond_ratio import run_respond_ratio
from experiments.running.training import TrainingOptions
from runtime.files import write_text_atomic


@dataclass(frozen=True)
class MainJob:
    out: Path
    folds: int = 3
    subjects: int = 10
    images: int = 8
    iters: int = 300
    batch_size: int = 64
    variants: tuple = ("softmax", "l2", "l2_center")


def run_main_job(job, extra_sections=()):
    """Run ``job``; returns the report's path.

    ``extra_sections``: callables (run folders, output folder) -> Markdown,
    appended to the report in order.
    """
    started = time.time()
    out = Path(job.out)
    data_dir = out / "synthetic"
    if (data_dir / MANIFEST).is_file():
        print(f"[1/4] prepared dataset: reusing {data_dir}")
    else:
        print(f"[1/4] generating and preparing the synthetic dataset into {data_dir}")
        out.mkdir(parents=True, exist_ok=True)
        prepare_dataset(PrepareOptions(dataset="synthetic", out=data_dir, folds=job.folds,
                                       synthetic_subjects=job.subjects, synthetic_images=job.images))
    PreparedDataset.open(data_dir)

    run_dirs = []
    for index, variant in enumerate(job.variants):
        print(f"[2/4] cross-validation {index + 1}/{len(job.variants)}: toy net, {variant}")
        options = TrainingOptions(net="toy", variant=variant, iters=job.iters, batch_size=job.batch_size)
        run_dir, summary = run_crossval(data_dir, options, out / "runs")
        print_summary(run_dir.name, run_dir, summary)
        run_dirs.append(run_dir)

    print("[3/4] RespondRatio (Eq. 13) of the trained toy networks")
    for run_dir in run_dirs:
        run_respond_ratio(run_dir)

    print("[4/4] report")
    report = out / "report.md"
    text = build_report(run_dirs, report, title="Main job: toy network on the synthetic dataset")
    extras = [section(run_dirs, out) for section in extra_sections]
    if extras:
        write_text_atomic(report, "\n".join([text.rstrip(), "", *extras]) + "\n")
    print(f"done in {time.time() - started:.0f} s. Report: {report}")
    return report
