"""Training curves from a Caffe log (glog format, as `caffe train` writes it).

Only for plots and progress display: results (accuracies, predictions) are
always computed from saved models and written as files, never read from logs.
"""
import re

ITER_LOSS = re.compile(r"Iteration (\d+) \(.*?\), loss = ([-+.\deE]+\d|nan|inf)")
_ITER_LOSS_OLD = re.compile(r"Iteration (\d+), loss = ([-+.\deE]+\d|nan|inf)")
_LR = re.compile(r"Iteration (\d+), lr = ([-+.\deE]+\d)")
_TEST_START = re.compile(r"Iteration (\d+), Testing net")
_TEST_OUTPUT = re.compile(r"Test net output #\d+: (\S+) = ([-+.\deE]+\d|nan|inf)")


def parse_caffe_log(text):
    """Return {"train": [(iter, loss)], "lr": [(iter, lr)], "test": [(iter, {name: value})]}."""
    train, rates, tests = [], [], []
    test_iter = None
    for line in text.splitlines():
        match = ITER_LOSS.search(line) or _ITER_LOSS_OLD.search(line)
        if match:
            train.append((int(match.group(1)), float(match.group(2))))
            continue
        match = _LR.search(line)
        if match:
            rates.append((int(match.group(1)), float(match.group(2))))
            continue
        match = _TEST_START.search(line)
        if match:
            test_iter = int(match.group(1))
            tests.append((test_iter, {}))
            continue
        match = _TEST_OUTPUT.search(line)
        if match and tests:
            tests[-1][1][match.group(1)] = float(match.group(2))
    return {"train": train, "lr": rates, "test": tests}
