"""How well an evaluation's confidence matches its accuracy, and its top-5 accuracy, kept as
sums over batches so that evaluation reduces them across processes in one all_reduce.

- ECE (expected calibration error): the top-1 confidences fall into 15 equal-width bins
  [k/15, (k+1)/15) (a confidence of exactly 1.0 in a slot of its own, as torchmetrics'
  `MulticlassCalibrationError` bins them); the ECE is the images' share in each bin times
  |accuracy - mean confidence| there, summed (Guo et al., "On Calibration of Modern Neural
  Networks", 2017). 0 is perfect.
- Brier score: the squared distance between the softmax and the one-hot label, summed over
  classes and averaged over images (0 to 2; lower is better).
- Top-5 accuracy: the label among the five highest logits (reported with more than 5 classes).
The negative log-likelihood is the evaluation's loss itself (cross-entropy without label
smoothing). tests/test_calibration.py checks these against torchmetrics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ECE_BINS = 15
TOP_K = 5
_SLOTS = ECE_BINS + 1  # the last: confidence exactly 1.0
SIZE = 2 + 3 * _SLOTS  # brier, top-k correct, then per slot: count, confidence, correct


def batch_sums(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """This batch's sums (float64, SIZE of them) on the logits' device."""
    probs = logits.float().softmax(1)
    confidence, predicted = probs.max(1)
    correct = (predicted == labels).float()
    brier = (probs - F.one_hot(labels, probs.shape[1]).float()).square().sum()
    k = min(TOP_K, probs.shape[1])
    top_k = (logits.topk(k, 1).indices == labels[:, None]).any(1).sum()
    edges = torch.linspace(0, 1, ECE_BINS + 1, device=logits.device)
    slot = torch.bucketize(confidence, edges, right=True) - 1
    per_image = torch.stack([torch.ones_like(confidence), confidence, correct]).double()
    per_slot = per_image.new_zeros(3, _SLOTS).index_add_(1, slot, per_image)
    head = torch.stack([brier.double(), top_k.double()])
    return torch.cat([head, per_slot.flatten()])


def scores(sums: torch.Tensor, seen: float, classes: int) -> dict[str, float]:
    """ece, brier (and top5_acc with more than TOP_K classes) from batch_sums added up over
    `seen` images."""
    if seen == 0:
        return {}
    _, confidence, correct = sums[2:].view(3, _SLOTS)
    found = {
        "ece": float((confidence - correct).abs().sum() / seen),
        "brier": float(sums[0] / seen),
    }
    if classes > TOP_K:
        found["top5_acc"] = float(sums[1] / seen)
    return found


def reliability(sums: torch.Tensor) -> list[dict[str, float]]:
    """Per bin that holds images: its range, image count, mean confidence and accuracy (the
    reliability diagram's bars)."""
    per_slot = sums[2:].view(3, _SLOTS)
    per_bin = per_slot[:, :ECE_BINS].clone()
    per_bin[:, -1] += per_slot[:, ECE_BINS]  # a confidence of 1.0 joins the last bin here
    count, confidence, correct = per_bin.tolist()
    return [
        {
            "low": k / ECE_BINS,
            "high": (k + 1) / ECE_BINS,
            "images": int(count[k]),
            "confidence": confidence[k] / count[k],
            "accuracy": correct[k] / count[k],
        }
        for k in range(ECE_BINS)
        if count[k]
    ]


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T > 0 that minimizes the negative log-likelihood of softmax(logits / T)
    (Guo et al. 2017's temperature scaling), by L-BFGS on log T from T = 1."""
    logits, labels = logits.detach().double(), labels.detach()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def nll() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(nll)
    return float(log_t.detach().exp())


class Scaled(torch.nn.Module):
    """A model whose logits are divided by a fitted temperature."""

    def __init__(self, model: torch.nn.Module, temperature: float) -> None:
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images) / self.temperature
