"""PNG plots: confusion matrix, ROC curves, training curves. matplotlib, Agg backend."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from experiments.analysis.metrics import mean_roc, normalized_confusion  # noqa: E402


def plot_confusion(cm, class_names, path, title="Confusion matrix (%)"):
    percent = normalized_confusion(cm)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(class_names), 0.8 + 0.6 * len(class_names)))
    ax.imshow(percent, cmap="Blues", vmin=0, vmax=100)
    for (i, j), value in np.ndenumerate(percent):
        ax.text(j, i, f"{value:.1f}", ha="center", va="center",
                color="white" if value > 60 else "black", fontsize=8)
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_roc(curves, path, title="Mean one-vs-rest ROC"):
    """curves: {label: (probabilities (N, K), labels (N,))}; one mean ROC per entry."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for name, (probabilities, labels) in curves.items():
        roc = mean_roc(probabilities, labels)
        ax.plot(roc["fpr_grid"], roc["mean_tpr"], label=f"{name} (AUC {roc['mean_auc']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_training_curves(parsed_logs, path, title="Training"):
    """parsed_logs: {label: parse_caffe_log(...) result}. Loss on the left, test accuracy right."""
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.5))
    for name, log in parsed_logs.items():
        if log["train"]:
            iters, losses = zip(*log["train"])
            loss_ax.plot(iters, losses, label=name)
        tests = [(it, out["accuracy"]) for it, out in log["test"] if "accuracy" in out]
        if tests:
            iters, accs = zip(*tests)
            acc_ax.plot(iters, accs, marker="o", label=name)
    loss_ax.set_xlabel("iteration")
    loss_ax.set_ylabel("training loss")
    acc_ax.set_xlabel("iteration")
    acc_ax.set_ylabel("test accuracy")
    for ax in (loss_ax, acc_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
