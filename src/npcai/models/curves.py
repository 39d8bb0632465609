"""The training-curve figure: loss and validation AUC per epoch, the selected epoch marked."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from npcai.fsutil import save_figure

__all__ = ["plot_training_curve"]


def plot_training_curve(history: pd.DataFrame, path: str | Path, *, best_epoch: int | list[int] | None = None,
                        title: str = "Training curve", monitor: str = "val_auc",
                        loss_label: str = "binary cross-entropy loss") -> Path:
    """Write a two-panel PNG: train/validation loss, and validation-patient AUC, per epoch.

    Args:
        history: columns epoch, train_loss, val_loss and ``monitor`` (epochs 0-based; shown 1-based).
        path: the PNG to write (atomically).
        best_epoch: the epoch selected on the validation metric (0-based), marked on both panels;
            for a deep ensemble (``history`` with a ``member`` column, one curve per member) the
            list of the members' selected epochs.
        title: the figure title.
        monitor: the task's validation selection metric (``val_auc`` for the binary task).
        loss_label: the y label of the loss panel (the task's loss).
    """
        
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    ep = np.unique(history["epoch"].to_numpy() + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    if "member" in history:       # a deep ensemble: each member's own curves and selected epoch
        for k, (member, h) in enumerate(history.groupby("member", sort=True)):
            colour = f"C{k % 10}"
            e = h["epoch"].to_numpy() + 1
            ax1.plot(e, h["train_loss"], "o-", color=colour, alpha=0.5, lw=1,
                     label="training (slices, augmented)" if k == 0 else None)
            ax1.plot(e, h["val_loss"], "s--", color=colour, lw=1, label="validation" if k == 0 else None)
            ax2.plot(e, h[monitor], "s-", color=colour, lw=1, label=f"member {int(member) + 1}")
            if best_epoch is not None:
                chosen = best_epoch[k] + 1
                ax2.plot([chosen], h.loc[h["epoch"] + 1 == chosen, monitor].to_numpy()[:1], "*", ms=13,
                         color=colour, markeredgecolor="black", label="selected epoch" if k == 0 else None)
        best_epoch = None
    else:
        ax1.plot(ep, history["train_loss"], "o-", label="training (slices/bags, augmented)")
        ax1.plot(ep, history["val_loss"], "s-", label="validation")
        ax2.plot(ep, history[monitor], "s-", color="tab:orange", label="validation patients")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel(loss_label)
    ax1.set_title("Loss")
    name = monitor.removeprefix("val_")
    if monitor == "val_auc":
        ax2.axhline(0.5, color="grey", ls=":", lw=1, label="chance (0.5)")
        ax2.set_ylim(0, 1.02)
        name = "AUC"
    ax2.set_xlabel("epoch")
    ax2.set_ylabel(f"patient-level {name}")
    ax2.set_title(f"Validation {name} (selects the epoch)")
    if best_epoch is not None:
        for ax in (ax1, ax2):
            ax.axvline(best_epoch + 1, color="tab:green", ls="--", lw=1, label=f"selected epoch {best_epoch + 1}")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if len(ep):
            ax.set_xticks(ep if len(ep) <= 20 else ep[:: max(1, len(ep) // 10)])
    fig.suptitle(title)
    save_figure(fig, path, dpi=110)
    return path
