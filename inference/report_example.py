"""A predict.py example for a run's report: generated faces of unseen subjects, classified by the run's model.

    images = write_example_faces(out / "example_faces")
    markdown = predict_example_markdown(run_dir, images)

The faces come from data_prep/synthetic.py with a seed of their own, so their
subjects are not among the dataset's; each file is named after the expression
it was drawn with. The table is made by the code tools/predict.py runs
(inference.batch.predict_inputs), dlib detection included.
"""
from pathlib import Path

import cv2
import numpy as np

from data_prep.labels import CLASS_NAMES
from data_prep.synthetic import draw_face, expression_parameters, make_subject
from inference.batch import predict_inputs
from inference.media import expand_inputs
from inference.predictor import Predictor

# Subjects of the synthetic dataset are seeded [seed, number]; these use [EXAMPLE_SEED, number].
EXAMPLE_SEED = 20190101


def write_example_faces(folder, expressions=6, subjects=1, size=128, seed=EXAMPLE_SEED):
    """One face per expression and subject in ``folder``; returns their paths.

    The faces are deterministic: a folder holding exactly these files already
    (a rerun) is reused; a folder holding anything else is refused.
    """
    folder = Path(folder)
    names = [f"face{number + 1:02d}_{CLASS_NAMES[label]}.png"
             for number in range(subjects) for label in range(expressions)]
    if folder.exists():
        present = sorted(p.name for p in folder.iterdir())
        if present == sorted(names):
            return [folder / name for name in names]
        raise FileExistsError(f"{folder} exists and holds other files than the example faces; "
                              "choose a new folder")
    tmp = folder.with_name(f".{folder.name}.partial")
    tmp.mkdir(parents=True, exist_ok=True)
    for number in range(subjects):
        rng = np.random.default_rng([seed, number])
        subject = make_subject(rng, size)
        for label in range(expressions):
            image, _ = draw_face(rng, subject, expression_parameters(rng, label, subject), size)
            path = tmp / f"face{number + 1:02d}_{CLASS_NAMES[label]}.png"
            if not cv2.imwrite(str(path), image):
                raise OSError(f"cannot write {path}")
    tmp.rename(folder)   # all faces or none: a rerun after an interruption starts again
    return [folder / name for name in names]


def predict_example_markdown(run_dir, images, fold=None):
    """Markdown: the predict.py command for ``images`` with the run's model, and its output as a table."""
    predictor = Predictor(run_dir, fold=fold)
    records = []
    counts = predict_inputs(predictor, expand_inputs(images), records.append, progress=False)
    names = [Path(p).name for p in images]
    shown = " ".join(str(p) for p in images)
    folders = {Path(p).parent for p in images}
    if len(folders) == 1 and [i.path for i in expand_inputs(folders)] == sorted(map(Path, images)):
        shown = f"{folders.pop()}/"   # the folder holds exactly these images: the shorter command
    lines = ["## Using the model: predict.py on generated faces", "",
             f"Faces of a subject the model never saw (data_prep/synthetic.py, seed {EXAMPLE_SEED}), one per "
             f"expression, each file named after the expression it was drawn with; model: {predictor.description}.",
             "", "```", f"python tools/predict.py --model {run_dir} {shown} --out faces.jsonl", "```", "",
             f"{counts.summary()}.", "",
             "| image | face box (l, t, r, b) | predicted | p | runner-up |",
             "| --- | --- | --- | --- | --- |"]
    for record in records:
        name = Path(record["input"]).name if Path(record["input"]).name in names else record["input"]
        if record["status"] != "face":
            lines.append(f"| {name} | {record['status']}: {record['reason']} | – | – | – |")
            continue
        ranked = sorted(record["probabilities"].items(), key=lambda kv: -kv[1])
        box = ", ".join(f"{v:.0f}" for v in record["box"])
        lines.append(f"| {name} | {box} | {ranked[0][0]} | {ranked[0][1]:.2f} | "
                     f"{ranked[1][0]} {ranked[1][1]:.2f} |")
    return "\n".join(lines) + "\n"
