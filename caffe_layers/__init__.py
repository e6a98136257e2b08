"""Python Caffe layers of the project (loaded by name from prototxts, e.g.
``python_param { module: "caffe_layers.sparseness" layer: "FeatureSparsenessLoss" }``)."""
