"""Target metrics: reconstruction error and the accuracy of a linear probe on the latent."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from aetl.data.domains import unit
from aetl.data.pair import Pair
from aetl.infra.rundir import Run
from aetl.infra.schema import Natural, NonNegative
from aetl.models import AutoEncoder

Predictor = Callable[[torch.Tensor], torch.Tensor]  # images -> class indices


@dataclass
class EvalSettings:
    """The `eval` config."""

    probe_l2: NonNegative  # L2 penalty of the linear probe behind target_acc
    n_images: Natural      # images per reconstruction grid


EVAL_VALUES = 2 ** 20  # pixel values per evaluation batch: activations stay small for large colour images


def eval_batches(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """x in batches of up to 1024 images and EVAL_VALUES values (1024 28x28 digits, 85 64x64 RGB images)."""
    per_image = max(1, x[0].numel()) if len(x) else 1
    return x.split(max(1, min(1024, EVAL_VALUES // per_image)))


@torch.no_grad()
def recon_errors(model: AutoEncoder, x: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error (pixels in [0, 1]; x may be uint8), shape (N,)."""
    was_training = model.training
    model.eval()
    errs = [_recon_error(model, unit(xb)) for xb in eval_batches(x)]
    model.train(was_training)
    return torch.cat(errs) if errs else torch.zeros(0, device=x.device)


def _recon_error(model: AutoEncoder, x: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(model(x).recon, x, reduction="none").flatten(1).mean(1)


def reconstruction_metrics(model: AutoEncoder, x: torch.Tensor) -> dict[str, float]:
    """MSE over all pixels, and PSNR in dB averaged over images (peak 1)."""
    errs = recon_errors(model, x)
    psnr = (-10 * torch.log10(errs.clamp_min(1e-10))).mean()
    return {"mse": errs.mean().item(), "psnr": psnr.item()}


@torch.no_grad()
def encode_all(model: AutoEncoder, x: torch.Tensor) -> torch.Tensor:
    was_training = model.training
    model.eval()
    z = torch.cat([model.encode(unit(xb)).flatten(1) for xb in eval_batches(x)])
    model.train(was_training)
    return z


def fit_probe(model: AutoEncoder, x_train: torch.Tensor, y_train: torch.Tensor, n_classes: int,
              l2: float = 1e-3, max_iter: int = 200) -> Predictor:
    """A multinomial logistic regression fitted (L-BFGS, full batch) on the frozen
    encoder's standardised codes of the labelled images; returns images -> predicted class."""
    z_train = encode_all(model, x_train)
    mean, std = z_train.mean(0), z_train.std(0, unbiased=False).clamp_min(1e-6)
    z_train = (z_train - mean) / std
    weight = torch.zeros(z_train.shape[1], n_classes, device=z_train.device, requires_grad=True)
    bias = torch.zeros(n_classes, device=z_train.device, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z_train @ weight + bias, y_train) + l2 * weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)

    @torch.no_grad()
    def predict(x: torch.Tensor) -> torch.Tensor:
        return (((encode_all(model, x) - mean) / std) @ weight + bias).argmax(1)

    return predict


def head_predictions(model: AutoEncoder, classes: torch.Tensor) -> Predictor:
    """images -> target classes by the model's own (source-trained) classifier head, as it is:
    classes[i] is the head's output for target class i."""

    @torch.no_grad()
    def predict(x: torch.Tensor) -> torch.Tensor:
        model.eval()
        return torch.cat([model.logits(model.encode(unit(xb)))[:, classes].argmax(1) for xb in eval_batches(x)])

    return predict


def source_head(model: AutoEncoder, pair: Pair) -> Predictor | None:
    """Mf's own classifier (trained on the source's labels) as a predictor of the target's
    classes, when the model carries it and every target class is one of the source's."""
    classes = pair.head_classes()
    return head_predictions(model, classes) if model.has_head and classes is not None else None


def target_predictor(model: AutoEncoder, pair: Pair, probe_l2: float) -> Predictor | None:
    """images -> target classes: the linear probe on the labelled target images, else the source head."""
    labelled = pair.target.train.labelled()
    if len(labelled):
        return fit_probe(model, labelled.x, labelled.y, len(pair.target.classes), probe_l2)
    return source_head(model, pair)


def accuracy(predict: Predictor | None, split) -> float | None:
    """Share of split's labelled images that predict gets right (None without a predictor or labels)."""
    keep = torch.nonzero(split.y >= 0).squeeze(1)
    if predict is None or not len(keep):
        return None
    return (predict(split.pixels(keep)) == split.y[keep]).float().mean().item()


def evaluate_run(model: AutoEncoder, pair: Pair, cfg: DictConfig, run: Run) -> dict:
    """Target and source test metrics (logged to metrics.jsonl) and the reconstruction grids;
    cfg is the `eval` branch.

    target_acc is the linear probe on the labelled target images; with no target labels it
    is Mf's source classifier applied to T as it is (when it has one and the target's classes
    are among the source's)."""
    target = reconstruction_metrics(model, pair.target.test.pixels())
    head = source_head(model, pair)
    predict = target_predictor(model, pair, cfg.probe_l2)
    val = validation_figures(model, pair, cfg, predict)  # for tuning: model selection never reads the test split
    metrics = {"target_mse": target["mse"], "target_psnr": target["psnr"],
               "target_acc": accuracy(predict, pair.target.test),
               "target_acc_source_head": accuracy(head, pair.target.test), "target_val_acc": val["val_acc"],
               "source_mse": reconstruction_metrics(model, pair.source.test.pixels())["mse"],
               "target_val_mse": val["val_mse"], "n_target_labelled": len(pair.target.train.labelled()),
               "target_val_im": val["val_im"], "target_val_entropy": val["val_entropy"],
               "source_val_acc": val["source_val_acc"]}
    run.log_metrics("eval", **metrics)
    for name, split in (("recon_source.png", pair.source.test), ("recon_target.png", pair.target.test)):
        x = split.batch(slice(0, cfg.n_images))
        run.save_recon_grid(name, x, reconstruction(model, x))
    return metrics


def validation_figures(model: AutoEncoder, pair: Pair, cfg: DictConfig, predict: Predictor | None = None) -> dict:
    """Validation MSE, validation accuracy where the target has labels, and the label-free
    figures of the model's own classifier (`label_free`): what choices are made on."""
    val = pair.target.val
    if not len(val):
        return {"val_mse": None, "val_acc": None, "labelled": 0, **label_free(model, pair)}
    predict = predict or target_predictor(model, pair, cfg.probe_l2)
    return {"val_mse": reconstruction_metrics(model, val.pixels())["mse"], "val_acc": accuracy(predict, val),
            "labelled": len(pair.target.train.labelled()), **label_free(model, pair)}


@torch.no_grad()
def label_free(model: AutoEncoder, pair: Pair) -> dict[str, float | None]:
    """Figures that read no target label, for choices made with none: on the target validation
    images, the model's own classifier's information-maximisation score `val_im` (the entropy
    of its mean prediction minus the mean entropy of its predictions, over log K: confident
    and diverse; pytorch-adapt's IMValidator) and its mean prediction entropy over log K
    `val_entropy`; and its accuracy on the source validation split `source_val_acc` (source
    labels). None without a classifier for the target's classes."""
    classes = pair.head_classes()
    none = {"val_im": None, "val_entropy": None, "source_val_acc": None}
    if not model.has_head or classes is None or not len(pair.target.val):
        return none
    model.eval()
    every = torch.cat([model.logits(model.encode(unit(xb)).flatten(1)) for xb in eval_batches(pair.target.val.pixels())])
    logits = every[:, classes]  # (the head's width from its output: a concat model's head is not `model.head`)
    scale = math.log(len(classes)) if len(classes) > 1 else 1.0
    entropy, diversity = (e.item() / scale for e in prediction_entropies(logits.softmax(1), 1e-12))
    own = head_predictions(model, torch.arange(every.shape[1], device=classes.device))
    return {"val_im": diversity - entropy, "val_entropy": entropy, "source_val_acc": accuracy(own, pair.source.val)}


def prediction_entropies(p: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Of class probabilities p (N x K), in nats: the mean entropy of the predictions and the
    entropy of their mean (information maximisation wants the first low, the second high; the
    label-free figure `val_im` and drcn's `adapt.im` loss are both made of them)."""
    mean = p.mean(0)
    return -(p * p.clamp_min(eps).log()).sum(1).mean(), -(mean * mean.clamp_min(eps).log()).sum()


@torch.no_grad()
def reconstruction(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    return model(x).recon
