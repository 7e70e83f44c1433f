"""The spec's ``AdvancedTrainer`` as plain functions: AdamW, cosine warm restarts, weighted CE.

* AdamW(lr, weight_decay); ``CosineAnnealingWarmRestarts(T_0=t0 epochs, T_mult=2)`` stepped
  fractionally after every batch (``scheduler.step(epoch + i / n_batches)``).
* ``CrossEntropyLoss`` with the configured class weights, or inverse-frequency weights from the
  training labels when ``class_weights`` is ``None``; gradient-norm clipping.
* Early stopping on the validation loss with ``early_stopping_patience``; the best epoch's weights
  are restored. With an empty validation set the training loss is monitored instead (logged).
* Seeded and deterministic on CPU: two runs with the same inputs give identical weights.
* CUDA when present (``device="auto"``): bf16 autocast and pinned-memory loaders.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.datasets import SequenceDataset
from cryptoml_pipeline.modeling.nets.transformer import CryptoTransformer
from cryptoml_pipeline.settings import ModelConfig, TrainingConfig

logger = logging.getLogger(__name__)

N_CLASSES = 5


@dataclass(frozen=True)
class EpochLog:
    epoch: int  # 1-based
    train_loss: float
    val_loss: float | None  # None when the validation set is empty
    val_accuracy: float | None
    samples_per_s: float
    lr: float  # learning rate at the end of the epoch


@dataclass
class TrainResult:
    model: nn.Module
    history: list[EpochLog]
    best_epoch: int  # 1-based epoch whose weights the model holds
    device: str
    train_seconds: float
    class_weights: list[float]
    monitor: str = "val_loss"  # or "train_loss" when the validation set is empty
    best_loss: float = field(default=math.nan)


def resolve_device(pref: str) -> torch.device:
    """``"auto"`` -> cuda when available, else cpu; ``"cuda"`` without a GPU is an InputError."""
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if pref == "cuda" and not torch.cuda.is_available():
        raise InputError("training.device is 'cuda' but no CUDA device is available")
    if pref not in ("cpu", "cuda"):
        raise InputError(f"unknown device {pref!r} (expected auto, cpu or cuda)")
    return torch.device(pref)


def inverse_frequency_weights(classes: np.ndarray, n_classes: int = N_CLASSES) -> list[float]:
    """``n / (K * count_c)``, normalised to mean 1 over the present classes; absent ones get 1."""
    counts = np.bincount(np.asarray(classes, dtype=np.int64), minlength=n_classes)[:n_classes]
    present = counts > 0
    weights = np.ones(n_classes, dtype=np.float64)
    if present.any():
        raw = counts.sum() / (n_classes * counts[present])
        weights[present] = raw / raw.mean()
    return [float(w) for w in weights]


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


@contextlib.contextmanager
def _reproducible(device: torch.device, seed: int, num_threads: int | None) -> Iterator[None]:
    """Seed every RNG; on CPU turn deterministic algorithms on (restored afterwards)."""
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    old_threads = torch.get_num_threads()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    if num_threads:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
        torch.set_num_threads(old_threads)


def _loader(
    ds: SequenceDataset, batch_size: int, device: torch.device, generator: torch.Generator | None
) -> DataLoader:
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=generator is not None,
        generator=generator,
        num_workers=0,
        pin_memory=device.type == "cuda",
    )


def _evaluate(
    model: nn.Module,
    loader: DataLoader,
    weight: torch.Tensor,
    device: torch.device,
    use_autocast: bool,
) -> tuple[float, float]:
    """Class-weighted mean cross-entropy and plain accuracy over a labeled loader."""
    model.eval()
    loss_sum, weight_sum, correct, count = 0.0, 0.0, 0, 0
    with torch.inference_mode():
        for x, y in loader:
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            with _autocast(device, use_autocast):
                logits = model(x)
            logits = logits.float()
            nll = nn.functional.cross_entropy(logits, y, reduction="none")
            w = weight[y]
            loss_sum += float((nll * w).sum())
            weight_sum += float(w.sum())
            correct += int((logits.argmax(dim=1) == y).sum())
            count += int(y.numel())
    return loss_sum / max(weight_sum, 1e-12), correct / max(count, 1)


def train_model(
    train_ds: SequenceDataset,
    val_ds: SequenceDataset,
    *,
    input_dim: int,
    model_config: ModelConfig,
    training_config: TrainingConfig,
    force_autocast: bool = False,
) -> TrainResult:
    """Train a :class:`CryptoTransformer` and return it with the best epoch's weights restored.

    ``force_autocast`` runs the bf16 autocast path even on CPU (used by tests to cover it).
    """
    cfg = training_config
    if len(train_ds) == 0:
        raise InputError("no training samples: the fit window has no valid labeled sequence")
    if not train_ds.labeled or (len(val_ds) and not val_ds.labeled):
        raise InputError("training and validation datasets must be labeled")
    if cfg.max_batches_per_epoch is not None and cfg.max_batches_per_epoch < 1:
        raise InputError(f"max_batches_per_epoch must be >= 1, got {cfg.max_batches_per_epoch}")
    if cfg.epochs < 1:
        raise InputError(f"epochs must be >= 1, got {cfg.epochs}")
    device = resolve_device(cfg.device)
    use_autocast = force_autocast or (device.type == "cuda" and cfg.bf16_autocast)
    weights = (
        [float(w) for w in cfg.class_weights]
        if cfg.class_weights is not None
        else inverse_frequency_weights(train_ds.classes)
    )
    monitor = "val_loss" if len(val_ds) else "train_loss"
    if monitor == "train_loss":
        logger.warning("validation set is empty: early stopping monitors the training loss")
    start = time.perf_counter()
    with _reproducible(device, cfg.seed, cfg.num_threads):
        model = CryptoTransformer(input_dim, model_config, n_classes=N_CLASSES).to(device)
        weight_t = torch.tensor(weights, dtype=torch.float32, device=device)
        criterion = nn.CrossEntropyLoss(weight=weight_t)
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=cfg.t0, T_mult=2
        )
        generator = torch.Generator().manual_seed(cfg.seed)
        train_loader = _loader(train_ds, cfg.batch_size, device, generator)
        val_loader = _loader(val_ds, cfg.batch_size, device, None)
        n_batches = len(train_loader)
        if cfg.max_batches_per_epoch is not None:
            n_batches = min(n_batches, cfg.max_batches_per_epoch)

        history: list[EpochLog] = []
        best_loss, best_epoch, stale = math.inf, 0, 0
        best_state = _snapshot(model)
        logger.info(
            "training on %s: %d train / %d val samples, %d batches/epoch, autocast=%s, "
            "class weights %s",
            device,
            len(train_ds),
            len(val_ds),
            n_batches,
            use_autocast,
            [round(w, 3) for w in weights],
        )
        for epoch in range(cfg.epochs):
            model.train()
            t0 = time.perf_counter()
            losses: list[float] = []
            seen = 0
            for i, (x, y) in enumerate(itertools.islice(train_loader, n_batches)):
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                with _autocast(device, use_autocast):
                    logits = model(x)
                loss = criterion(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step(epoch + i / n_batches)
                losses.append(float(loss.detach()))
                seen += int(y.numel())
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - t0
            train_loss = float(np.mean(losses))
            if len(val_ds):
                val_loss, val_acc = _evaluate(model, val_loader, weight_t, device, use_autocast)
                monitored: float = val_loss
            else:
                val_loss, val_acc, monitored = None, None, train_loss
            lr = float(optimizer.param_groups[0]["lr"])
            log = EpochLog(epoch + 1, train_loss, val_loss, val_acc, seen / max(elapsed, 1e-9), lr)
            history.append(log)
            logger.info(
                "epoch %d/%d loss %.4f val_loss %s val_acc %s %.0f samples/s lr %.2e",
                log.epoch,
                cfg.epochs,
                train_loss,
                f"{val_loss:.4f}" if val_loss is not None else "n/a (monitoring train loss)",
                f"{val_acc:.3f}" if val_acc is not None else "n/a",
                log.samples_per_s,
                lr,
            )
            if monitored < best_loss:
                best_loss, best_epoch, stale = monitored, epoch + 1, 0
                best_state = _snapshot(model)
            else:
                stale += 1
                if stale >= cfg.early_stopping_patience:
                    logger.info(
                        "early stopping after epoch %d: best %s %.4f at epoch %d",
                        epoch + 1,
                        monitor,
                        best_loss,
                        best_epoch,
                    )
                    break
        model.load_state_dict(best_state)
        model.eval()
    return TrainResult(
        model=model,
        history=history,
        best_epoch=best_epoch,
        device=str(device),
        train_seconds=time.perf_counter() - start,
        class_weights=weights,
        monitor=monitor,
        best_loss=best_loss,
    )


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A deep copy of the weights (detached clones, so later optimizer steps cannot touch it)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def predict_proba(
    model: nn.Module, ds: SequenceDataset, *, batch_size: int, device: torch.device | str
) -> np.ndarray:
    """Softmax probabilities ``[len(ds), n_classes]`` (float64 rows summing to 1), in ds order."""
    device = torch.device(device)
    n_classes = int(getattr(model, "n_classes", N_CLASSES))
    if len(ds) == 0:
        return np.zeros((0, n_classes), dtype=np.float64)
    model = model.to(device)
    model.eval()
    out: list[np.ndarray] = []
    with torch.inference_mode():
        for x, _ in _loader(ds, batch_size, device, None):
            logits = model(x.to(device, non_blocking=True)).float()
            out.append(torch.softmax(logits, dim=1).cpu().numpy())
    return np.concatenate(out).astype(np.float64)
