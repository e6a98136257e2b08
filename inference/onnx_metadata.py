"""The one definition of where an exported ONNX model keeps this project's metadata.

inference.onnx_export writes a JSON object (class names, the run's config, the
prepared dataset's manifest) under ``metadata_props[METADATA_KEY]``;
inference.onnx_runtime reads it back. This module imports nothing, so the
runtime side, which must work without Caffe, and the export side, which needs
Caffe, share the key without either importing the other.
"""

METADATA_KEY = "fer_sparse"
