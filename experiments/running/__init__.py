"""experiments.running: running a fold, a cross-validation, a cross-database run or a paper table: training under caffe train, evaluation, run folders."""
