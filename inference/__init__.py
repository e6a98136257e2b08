"""Using a trained model: ONNX export and Caffe-free inference."""
