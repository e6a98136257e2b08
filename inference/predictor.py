"""Expressions of the faces in an image, with a model trained by this project.

    predictor = Predictor("runs/synthetic_toy_l2/fold_00")      # a run folder or one of its folds
    predictor = Predictor("toy_l2_deploy.prototxt", weights="snapshot_iter_300.caffemodel",
                          manifest="data/prepared/synthetic/manifest.json")
    predictor = Predictor("toy.onnx")                            # onnxruntime, no Caffe needed
    result = predictor.predict(image)       # image: a path, a gray or BGR array
    for face in result.faces:
        print(face.box, face.label, dict(zip(predictor.class_names, face.probabilities)))

Every face is found and cropped as data_prep prepared the model's training
images (inference.preprocessing, from the prepared dataset's manifest); its
crops go through the net in batches together with the crops of the other
faces, and its probabilities are the mean softmax over its crops, as
experiments.running.evaluation scores a test image. Faces narrower than ``min_face``
come back in ``result.small``; an image without a face has no ``faces``.

The model's backend (inference.caffe_backend.CaffeClassifier or
inference.onnx_runtime.OnnxClassifier) is imported only when it is used, so
the ONNX path runs where Caffe is not installed.
"""
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from data_prep.framing import framing_from_dict, load_fer2013_framing
from data_prep.prepared import MANIFEST
from experiments.running.run_folder import TrainedModelError, trained_model
from inference.media import read_gray
from inference.preprocessing import FaceCropper, SmallFace, prep_config_from_manifest
from runtime.files import read_json


class ModelError(ValueError):
    """A model that cannot be used as given; the message names the file and what to do."""


@dataclass(frozen=True)
class FacePrediction:
    """One face: where it is, how it was aligned, and what the net says.

    box, points, source: as inference.preprocessing.Face
    probabilities: (K,) float64, the mean softmax over the face's crops
    label: the class name of the largest probability
    """
    box: tuple
    points: object
    source: str
    probabilities: np.ndarray
    label: str


@dataclass(frozen=True)
class ImagePrediction:
    faces: list
    small: list  # SmallFace: faces found but too small to classify


def resolve_run_model(model, fold=None):
    """(deploy prototxt, caffemodel, config, fold folder) of a run folder or a fold folder of one
    (experiments.running.run_folder.trained_model decides which model a folder holds)."""
    try:
        found = trained_model(model, fold)
    except TrainedModelError as exc:
        raise ModelError(str(exc)) from None
    return found.deploy, found.weights, found.config, found.fold_dir


def _read_manifest(path):
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    if not path.is_file():
        raise ModelError(f"error: manifest {path} does not exist; pass the manifest.json of the prepared "
                         "dataset the model was trained on (--manifest)")
    return read_json(path), path


def _gray(image):
    """A 2-D uint8 gray image from a path, a gray array or a BGR / BGRA array."""
    if isinstance(image, (str, Path)):
        return read_gray(image)
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected an 8-bit image, got dtype {image.dtype}")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"expected a gray (H, W) or BGR (H, W, 3) image, got shape {image.shape}")


class Predictor:
    """A trained model and the preprocessing of its training data (see the module docstring).

    model: a run folder or fold folder (tools/crossval.py, tools/crossdb.py;
        ``fold`` picks a fold, default the first with a finished training), a
        deploy prototxt (``weights`` and ``manifest`` required), or an .onnx
        file of tools/export_onnx.py (``manifest`` needed only when the export
        recorded none).
    gpu: Caffe device id (None: CPU). min_face, fallback: see
        inference.preprocessing.FaceCropper. batch_crops: crops per forward pass.
    detect_max_side: detect faces at up to this shorter side (default: the
        manifest's, what prepare used); raise it to find small faces in large
        photos (the crops are cut at full resolution either way).
    whole_image: for a model prepared with --align none (FER2013), take each
        whole image as the face (inputs that are ready-cut faces already)
        instead of detecting faces and cutting them with the manifest's framing.

    Attributes: class_names, input_size, backend ("caffe" or "onnx"),
    description (which files were loaded), manifest, config (PrepConfig).
    """

    def __init__(self, model, weights=None, manifest=None, fold=None, gpu=None, min_face=20,
                 fallback="report", batch_crops=256, detect_max_side=None, whole_image=False):
        model = Path(model)
        if batch_crops < 1:
            raise ValueError(f"batch_crops must be >= 1, got {batch_crops}")
        self.batch_crops = batch_crops
        if model.suffix.lower() == ".onnx":
            self._load_onnx(model, weights, manifest, fold, gpu)
        else:
            self._load_caffe(model, weights, manifest, fold, gpu)
        self.config = prep_config_from_manifest(self.manifest, origin=str(self.manifest_origin))
        if detect_max_side is not None:
            if detect_max_side < self.config.detect_min_side:
                raise ValueError(f"detect_max_side must be >= the manifest's detect_min_side "
                                 f"{self.config.detect_min_side}, got {detect_max_side}")
            self.config = replace(self.config, detect_max_side=int(detect_max_side))
        if self.classifier.input_size != self.config.size:
            raise ModelError(f"error: {self.model_file} takes {self.classifier.input_size}x"
                             f"{self.classifier.input_size} inputs but {self.manifest_origin} was prepared at "
                             f"{self.config.size}x{self.config.size}: pass the manifest of the dataset this "
                             "model was trained on")
        self.class_names = list(self.manifest["classes"])
        num_classes = self.classifier.num_classes
        if num_classes is not None and num_classes != len(self.class_names):
            raise ModelError(f"error: {self.model_file} outputs {num_classes} classes but "
                             f"{self.manifest_origin} names {len(self.class_names)}: pass the manifest of the "
                             "dataset this model was trained on")
        self.input_size = self.config.size
        self.cropper = FaceCropper(self.config, min_face=min_face, fallback=fallback,
                                   framing=self._framing(whole_image))

    def _framing(self, whole_image):
        """The Framing an --align none model's faces are cut with (None: whole images, or aligned nets)."""
        if self.config.align != "none" or whole_image:
            return None
        if self.manifest.get("framing"):
            return framing_from_dict(self.manifest["framing"], f"{self.manifest_origin} framing")
        if self.manifest.get("dataset") == "fer2013":
            # Prepared before the manifest recorded it: FER2013's framing is a fact of the database.
            return load_fer2013_framing()
        raise ModelError(
            f"error: {self.manifest_origin} was prepared with --align none (each training image used "
            "whole) and records no framing to cut faces from photos with; pass the images as ready-cut "
            "faces with --whole-image, or measure the database's framing (tools/measure_framing.py)")

    def _load_caffe(self, model, weights, manifest, fold, gpu):
        from inference.caffe_backend import CaffeClassifier, deploy_input_size

        if model.is_dir():
            if weights is not None:
                raise ModelError(f"error: {model} is a run folder: it brings its own caffemodel; "
                                 "pass weights only with a deploy prototxt")
            deploy, weights, config, fold_dir = resolve_run_model(model, fold)
            self.manifest, self.manifest_origin = _read_manifest(manifest or Path(config["data"]) / MANIFEST)
            self.description = f"{fold_dir} ({weights.name})"
        elif model.suffix == ".prototxt":
            if weights is None or manifest is None:
                raise ModelError(f"error: the deploy net {model} needs its caffemodel and the manifest.json of "
                                 "the prepared dataset it was trained on (--model DEPLOY --weights CAFFEMODEL --manifest M)")
            if fold is not None:
                raise ModelError("error: --fold goes with a run folder, not with a deploy net")
            deploy, weights = model, Path(weights)
            self.manifest, self.manifest_origin = _read_manifest(manifest)
            self.description = f"{deploy} with {weights}"
        else:
            raise ModelError(f"error: {model} is not a run folder, a deploy .prototxt or an .onnx model")
        self.model_file = deploy
        size = deploy_input_size(deploy)
        if size != int(self.manifest.get("image_size", size)):
            # checked before Caffe builds the net: a mismatched net would fail later, less clearly
            raise ModelError(f"error: {deploy} takes {size}x{size} inputs but {self.manifest_origin} was prepared "
                             f"at {self.manifest['image_size']}x{self.manifest['image_size']}: pass the manifest "
                             "of the dataset this net was trained on, or its own deploy net")
        if not Path(weights).is_file():
            raise ModelError(f"error: caffemodel {weights} does not exist")
        self.classifier = CaffeClassifier(deploy, weights, gpu=gpu)
        self.backend = "caffe"

    def _load_onnx(self, model, weights, manifest, fold, gpu):
        from inference.onnx_runtime import OnnxClassifier

        if weights is not None or fold is not None or gpu is not None:
            raise ModelError("error: an ONNX model takes no caffemodel, --fold or --gpu "
                             "(onnxruntime runs it on the CPU)")
        self.classifier = OnnxClassifier(model)
        self.model_file = model
        if manifest is not None:
            self.manifest, self.manifest_origin = _read_manifest(manifest)
        elif "manifest" in self.classifier.metadata:
            self.manifest, self.manifest_origin = self.classifier.metadata["manifest"], f"{model}'s metadata"
        else:
            raise ModelError(f"error: {model} records no prepared-dataset manifest (it was exported with "
                             "a deploy net and its weights alone); pass --manifest M, the manifest.json of the dataset "
                             "it was trained on, or export it from its run folder with tools/export_onnx.py")
        run = self.classifier.metadata.get("run", {})
        self.description = f"{model}" + (f" (exported from {run['folder']}/{run['fold']})" if run else "")
        self.backend = "onnx"

    def predict(self, image, landmarks=None):
        """ImagePrediction of one image (a path, or a gray / BGR uint8 array); see predict_many."""
        return self.predict_many([image], None if landmarks is None else [landmarks])[0]

    def predict_many(self, images, landmarks=None):
        """ImagePrediction per image; the crops of all their faces go through the net together.

        ``landmarks``: per image, None (detect with dlib) or its one face's five
        known points (data_prep.items.LANDMARK_NAMES order), as prepare.py used
        a landmarks CSV.
        """
        landmarks = [None] * len(images) if landmarks is None else list(landmarks)
        if len(landmarks) != len(images):
            raise ValueError(f"{len(landmarks)} landmark entries for {len(images)} images")
        return self.classify([self.cropper.faces(_gray(image), marks) for image, marks in zip(images, landmarks)])

    def classify(self, found):
        """ImagePrediction per (faces, small faces) pair of FaceCropper.faces; all crops in shared passes."""
        faces = [face for image_faces, _ in found for face in image_faces]
        probabilities = self.face_probabilities([face.crops for face in faces])
        results, start = [], 0
        for image_faces, small in found:
            predictions = [FacePrediction(face.box, face.points, face.source, probs,
                                          self.class_names[int(np.argmax(probs))])
                           for face, probs in zip(image_faces, probabilities[start:start + len(image_faces)])]
            start += len(image_faces)
            results.append(ImagePrediction(predictions, small))
        return results

    def face_probabilities(self, face_crops):
        """(faces, K) mean softmax over each face's crops ((crops, S, S) uint8 each), in batches."""
        if not face_crops:
            return np.zeros((0, len(self.class_names)))
        crops = np.concatenate(face_crops).astype(np.float32)[:, np.newaxis]
        parts = [self.classifier.probabilities(crops[start:start + self.batch_crops])
                 for start in range(0, len(crops), self.batch_crops)]
        per_crop = np.concatenate(parts)
        counts = np.array([len(c) for c in face_crops])
        return np.add.reduceat(per_crop, np.cumsum(counts) - counts, axis=0) / counts[:, np.newaxis]


__all__ = ["FacePrediction", "ImagePrediction", "ModelError", "Predictor", "SmallFace", "resolve_run_model"]
