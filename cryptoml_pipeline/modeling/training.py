"""The spec's ``AdvancedTrainer`` as plain functions: AdamW, cosine warm restarts, weighted CE.

* AdamW(lr, weight_decay); ``CosineAnnealingWarmRestarts(T_0=t0 epochs, T_mult=2)`` stepped
  fractionally after every batch (``scheduler.step(epoch + i / n_batches)``).
* ``CrossEntropyLoss`` with the configured class weights, or inverse-frequency weights from the
  training labels when ``class_weights`` is ``None``; gradient-norm clipping.
* Early stopping on the validation loss with ``early_stopping_patience``; the best epoch's weights
  are restored. With an empty validation set the training loss is monitored instead (logged).
* Seeded and deterministic on CPU: two runs with the same inputs give identical weights.
* CUDA when present (``device="auto"``): bf16 autocast, pinned-memory loaders and, with
  ``training.compile``, ``torch.compile``.
* Resumable: with ``checkpoint_path`` the complete training state (weights, optimizer, scheduler,
  every RNG, history, best weights, patience counter) is written atomically after each epoch; a
  later call with the same path and the same run fingerprint continues from the last finished
  epoch and ends with exactly the weights an uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.datasets import SequenceDataset
from cryptoml_pipeline.modeling.nets.transformer import CryptoTransformer
from cryptoml_pipeline.modeling.predictions import N_CLASSES
from cryptoml_pipeline.settings import ModelConfig, TrainingConfig

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1

ModelFactory = Callable[[int, int], nn.Module]  # (input_dim, n_classes) -> module


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
    batch_size: int = 0  # the batch size trained with (auto-picked on CUDA when configured)


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
    regression: RegressionTarget | None = None,
) -> tuple[float, float]:
    """Classification: class-weighted mean cross-entropy and plain accuracy. Regression: mean Huber
    loss and the accuracy of the predicted return's class (label thresholds) against the true
    return's class."""
    model.eval()
    loss_sum, weight_sum, correct, count = 0.0, 0.0, 0, 0
    with torch.inference_mode():
        for x, y in loader:
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            with _autocast(device, use_autocast):
                out = model(x)
            out = out.float()
            if regression is not None:
                out = out.reshape(-1)  # a one-output head: [B, 1] -> [B], as the targets
                loss_sum += float(nn.functional.huber_loss(out, y.float(), reduction="sum"))
                weight_sum += float(y.numel())
                correct += int((regression.classes(out) == regression.classes(y)).sum())
            else:
                nll = nn.functional.cross_entropy(out, y, reduction="none")
                w = weight[y]
                loss_sum += float((nll * w).sum())
                weight_sum += float(w.sum())
                correct += int((out.argmax(dim=1) == y).sum())
            count += int(y.numel())
    return loss_sum / max(weight_sum, 1e-12), correct / max(count, 1)


def pick_batch_size(
    model: nn.Module,
    ds: SequenceDataset,
    device: torch.device,
    candidates: tuple[int, ...],
    use_autocast: bool,
    regression: RegressionTarget | None = None,
    steps: int = 3,
) -> int:
    """The candidate batch size with the most training samples/s on ``device`` (GPU profile).

    Each candidate runs ``steps`` timed optimizer steps after one warm-up step on the dataset's
    first samples; a candidate that runs out of memory is skipped. The model's weights are
    restored afterwards, so the choice does not change what training then computes.
    """
    if len(ds) == 0 or not candidates:
        raise InputError("pick_batch_size needs samples and at least one candidate")
    initial = _snapshot(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    best, best_rate = None, -1.0
    model.train()
    for size in sorted(set(candidates)):
        n = min(size, len(ds))
        xs, ys = zip(*(ds[i] for i in range(n)), strict=True)
        x = torch.stack(xs).to(device)
        y = torch.stack(ys).to(device)
        try:
            for k in range(steps + 1):
                if k == 1:
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    t0 = time.perf_counter()
                with _autocast(device, use_autocast):
                    out = model(x).float()
                loss = (
                    nn.functional.huber_loss(out.reshape(-1), y.float())
                    if regression is not None
                    else nn.functional.cross_entropy(out, y)
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        except torch.OutOfMemoryError:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            logger.info("batch size %d: out of memory, skipped", size)
            continue
        rate = n * steps / max(time.perf_counter() - t0, 1e-9)
        logger.info("batch size %d: %.0f samples/s", size, rate)
        if rate > best_rate:
            best, best_rate = size, rate
        if n < size:  # the dataset is smaller than the larger candidates
            break
    model.load_state_dict(initial)
    if best is None:
        raise InputError(f"every candidate batch size {candidates} ran out of memory")
    logger.info("auto batch size: %d (%.0f samples/s)", best, best_rate)
    return best


@dataclass(frozen=True)
class RegressionTarget:
    """Targets are forward returns in units of ``strong_threshold``; a predicted value maps to a
    class with the label thresholds (``regression_to_signal``)."""

    weak_threshold: float
    strong_threshold: float

    def classes(self, scaled: torch.Tensor) -> torch.Tensor:
        r = scaled.detach().float() * self.strong_threshold
        w, s = self.weak_threshold, self.strong_threshold
        return (
            (r > -s).long() + (r > -w).long() + (r > w).long() + (r > s).long()
        )  # 0..4 = label + 2, exactly classify_returns' cut points


def train_model(
    train_ds: SequenceDataset,
    val_ds: SequenceDataset,
    *,
    input_dim: int,
    model_config: ModelConfig,
    training_config: TrainingConfig,
    force_autocast: bool = False,
    model_factory: ModelFactory | None = None,
    checkpoint_path: Path | str | None = None,
    on_epoch_end: Callable[[EpochLog], None] | None = None,
    restart_on_mismatch: bool = False,
    regression: RegressionTarget | None = None,
) -> TrainResult:
    """Train a network and return it with the best epoch's weights restored.

    ``model_factory(input_dim, n_classes)`` builds the network (default: the spec's
    :class:`CryptoTransformer` from ``model_config``). ``checkpoint_path`` makes the run resumable
    (see the module docstring); a checkpoint written by a different run is an error, or — with
    ``restart_on_mismatch`` — is logged and replaced by a fresh start. ``on_epoch_end`` is called
    after each epoch's checkpoint is on disk.
    ``force_autocast`` runs the bf16 autocast path even on CPU (used by tests to cover it).
    With ``regression`` the datasets yield float targets (forward returns in units of the strong
    threshold), the network has one output, the loss is Huber and the reported accuracy is that of
    the predicted return's class; class weights are not used.
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
    factory = model_factory or (
        lambda dim, k: CryptoTransformer(dim, model_config, n_classes=1 if regression else k)
    )
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    fingerprint = _fingerprint(
        input_dim,
        model_config,
        cfg,
        train_ds,
        val_ds,
        weights if regression is None else [regression.weak_threshold, regression.strong_threshold],
    )
    with _reproducible(device, cfg.seed, cfg.num_threads):
        model = factory(input_dim, N_CLASSES).to(device)
        step_model: nn.Module = model
        if cfg.compile and device.type == "cuda":
            step_model = torch.compile(model)  # type: ignore[assignment]
        weight_t = torch.tensor(weights, dtype=torch.float32, device=device)
        criterion: nn.Module = (
            nn.HuberLoss() if regression is not None else nn.CrossEntropyLoss(weight=weight_t)
        )
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=cfg.t0, T_mult=2
        )
        generator = torch.Generator().manual_seed(cfg.seed)
        batch_size = cfg.batch_size
        if cfg.auto_batch_size and device.type == "cuda":
            batch_size = pick_batch_size(
                model, train_ds, device, cfg.auto_batch_candidates, use_autocast, regression
            )
        train_loader = _loader(train_ds, batch_size, device, generator)
        val_loader = _loader(val_ds, batch_size, device, None)
        n_batches = len(train_loader)
        if cfg.max_batches_per_epoch is not None:
            n_batches = min(n_batches, cfg.max_batches_per_epoch)

        history: list[EpochLog] = []
        best_loss, best_epoch, stale = math.inf, 0, 0
        best_state = _snapshot(model)
        start_epoch, stopped = 0, False
        state = None
        if ckpt is not None and ckpt.is_file():
            try:
                state = _load_checkpoint(ckpt, fingerprint)
            except InputError as exc:
                if not restart_on_mismatch:
                    raise
                logger.warning("%s; starting afresh", exc)
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            best_state = state["best_state"]
            best_loss, best_epoch = float(state["best_loss"]), int(state["best_epoch"])
            stale, stopped = int(state["stale"]), bool(state["stopped"])
            history = [EpochLog(**h) for h in json.loads(state["history"])]
            start_epoch = int(state["epoch"])
            _set_rng_state(state, generator)
            logger.info(
                "resuming from %s after epoch %d (best epoch %d)", ckpt, start_epoch, best_epoch
            )
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
        for epoch in range(start_epoch, cfg.epochs):
            if stopped:
                break
            model.train()
            t0 = time.perf_counter()
            losses: list[float] = []
            seen = 0
            for i, (x, y) in enumerate(itertools.islice(train_loader, n_batches)):
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                with _autocast(device, use_autocast):
                    logits = step_model(x)
                if regression is not None:  # one output per sample, as the targets
                    loss = criterion(logits.float().reshape(-1), y.float())
                else:
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
                val_loss, val_acc = _evaluate(
                    model, val_loader, weight_t, device, use_autocast, regression
                )
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
                    stopped = True
            if ckpt is not None:
                _save_checkpoint(
                    ckpt,
                    {
                        "format": CHECKPOINT_FORMAT,
                        "fingerprint": fingerprint,
                        "epoch": epoch + 1,
                        "model": _snapshot(model),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "best_state": best_state,
                        "best_loss": best_loss,
                        "best_epoch": best_epoch,
                        "stale": stale,
                        "stopped": stopped,
                        "history": json.dumps([asdict(h) for h in history]),
                        **_rng_state(generator),
                    },
                )
            if on_epoch_end is not None:
                on_epoch_end(log)
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
        batch_size=batch_size,
    )


def _fingerprint(
    input_dim: int,
    model_config: ModelConfig,
    cfg: TrainingConfig,
    train_ds: SequenceDataset,
    val_ds: SequenceDataset,
    weights: list[float],
) -> str:
    """Identity of a training run: a checkpoint resumes only the run that wrote it."""
    h = hashlib.sha256()
    run = {
        "input_dim": input_dim,
        "model": model_config.model_dump(mode="json"),
        # epochs may be raised to continue a finished schedule; everything else must match
        "training": cfg.model_dump(mode="json", exclude={"epochs"}),
        "weights": weights,
        "n_train": len(train_ds),
        "n_val": len(val_ds),
    }
    h.update(json.dumps(run, sort_keys=True).encode())
    for ds in (train_ds, val_ds):
        h.update(np.ascontiguousarray(ds.rows).tobytes())
        h.update(np.ascontiguousarray(ds.classes).tobytes())
    return h.hexdigest()


def _rng_state(generator: torch.Generator) -> dict[str, object]:
    np_state = np.random.get_state()
    return {
        "rng_torch": torch.get_rng_state(),
        "rng_loader": generator.get_state(),
        "rng_numpy_keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
        "rng_numpy_rest": [int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "rng_python": json.dumps(random.getstate()),
    }


def _set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["rng_torch"])
    generator.set_state(state["rng_loader"])
    pos, has_gauss, cached = state["rng_numpy_rest"]
    keys = state["rng_numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, int(pos), int(has_gauss), float(cached)))
    version, internal, gauss = json.loads(state["rng_python"])
    random.setstate((version, tuple(internal), gauss))


def _save_checkpoint(path: Path, state: dict) -> None:
    """Atomic: a crash mid-write leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _load_checkpoint(path: Path, fingerprint: str) -> dict:
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # a truncated or foreign file
        raise InputError(f"training checkpoint {path} is unreadable: {exc}") from exc
    if state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"training checkpoint {path} has format {state.get('format')!r}")
    if state.get("fingerprint") != fingerprint:
        raise InputError(
            f"training checkpoint {path} belongs to a different run (data, model or training "
            "settings changed); delete it to start afresh"
        )
    return state


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


def predict_outputs(model: torch.nn.Module, ds, device: torch.device) -> np.ndarray:
    """Raw network outputs (the regression head's estimate), in dataset order."""
    model = model.to(device).eval()
    out = []
    with torch.inference_mode():
        for x, _ in DataLoader(ds, batch_size=512, shuffle=False):
            out.append(model(x.to(device)).float().cpu().numpy().reshape(-1))
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)
