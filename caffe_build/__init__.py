"""Building the project's Caffe: the patches (patches/, applied by CMakeLists.txt) and the
compile recipe of Caffe's own gtests against an installed build (gtests.py)."""
