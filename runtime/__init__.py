"""Where the project's Caffe is, and clear errors when it is missing or broken."""
