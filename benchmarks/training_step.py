"""Training-step throughput of the spec's full-size CryptoTransformer: samples/s and TFLOP/s.

Measures one optimizer step (forward, weighted cross-entropy, backward, grad clipping, AdamW) of
``CryptoTransformer`` with the ``full`` profile's sizes (d_model 256, 8 heads, 6 layers, ff 1024,
sequence 60) on CPU, and on CUDA when a GPU is present (bf16 autocast, a batch-size sweep to find
the throughput-optimal batch, optionally ``torch.compile``). FLOPs per step are counted by
``torch.utils.flop_counter.FlopCounterMode`` (matmuls/attention, forward + backward), so
TFLOP/s = counted FLOPs / measured step time. On a known GPU the result is also given as a
fraction of the card's dense bf16 peak. Writes ``benchmarks/results/training_step.json``.

Usage: ``.venv/bin/python benchmarks/training_step.py [--cpu-batch 64] [--compile]``
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cryptoml_pipeline.modeling.nets.transformer import CryptoTransformer
from cryptoml_pipeline.settings import profile_settings

OUT = Path(__file__).parent / "results" / "training_step.json"
N_FEATURES = 48
# dense bf16 peak (TFLOP/s, no sparsity) of cards we may meet
BF16_PEAK = {"H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "A100": 312.0}


def _peak(name: str) -> float | None:
    for key in sorted(BF16_PEAK, key=len, reverse=True):
        if all(part in name for part in key.split()):
            return BF16_PEAK[key]
    return None


def _step_fn(model: nn.Module, device: torch.device, batch: int, autocast: bool, compiled: bool):
    cfg = model.config
    x = torch.randn(batch, cfg.sequence_length, N_FEATURES, device=device)
    y = torch.randint(0, 5, (batch,), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    crit = nn.CrossEntropyLoss(weight=torch.ones(5, device=device))
    fwd = torch.compile(model) if compiled else model

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = fwd(x)
        loss = crit(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


def _flops(model: nn.Module, device: torch.device, batch: int, autocast: bool) -> int:
    step = _step_fn(model, device, batch, autocast, compiled=False)
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return int(counter.get_total_flops())


def _time(step, device: torch.device, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / iters


def measure(device: torch.device, batch: int, autocast: bool, compiled: bool, iters: int) -> dict:
    torch.manual_seed(0)
    cfg = profile_settings("full").model
    model = CryptoTransformer(N_FEATURES, cfg).to(device)
    model.train()
    flops = _flops(model, device, batch, autocast)
    seconds = _time(_step_fn(model, device, batch, autocast, compiled), device, 3, iters)
    return {
        "device": str(device),
        "batch_size": batch,
        "bf16_autocast": autocast,
        "torch_compile": compiled,
        "step_seconds": seconds,
        "samples_per_s": batch / seconds,
        "flops_per_step": flops,
        "tflops": flops / seconds / 1e12,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cpu-batch", type=int, default=64)
    parser.add_argument("--cpu-iters", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also try torch.compile on CUDA")
    args = parser.parse_args()
    cfg = profile_settings("full").model
    results: dict = {
        "model": {**cfg.model_dump(mode="json"), "input_dim": N_FEATURES},
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "cpu": measure(torch.device("cpu"), args.cpu_batch, False, False, args.cpu_iters),
        "cuda": None,
    }
    cpu = results["cpu"]
    print(f"cpu: {cpu['samples_per_s']:.0f} samples/s, {cpu['tflops']:.3f} TFLOP/s")
    if torch.cuda.is_available():
        device = torch.device("cuda")
        name = torch.cuda.get_device_name(device)
        sweep = []
        for batch in (256, 512, 1024, 2048):
            for compiled in (False, True) if args.compile else (False,):
                try:
                    r = measure(device, batch, True, compiled, 20)
                except torch.OutOfMemoryError:
                    torch.cuda.empty_cache()
                    continue
                sweep.append(r)
                print(
                    f"cuda b{batch} compile={compiled}: {r['samples_per_s']:.0f} samples/s, "
                    f"{r['tflops']:.1f} TFLOP/s"
                )
        best = max(sweep, key=lambda r: r["samples_per_s"]) if sweep else None
        peak = _peak(name)
        results["cuda"] = {
            "name": name,
            "bf16_peak_tflops": peak,
            "sweep": sweep,
            "best": best,
            "fraction_of_bf16_peak": best["tflops"] / peak if best and peak else None,
        }
    else:
        results["cuda_note"] = "no CUDA device on this machine: GPU throughput not measured"
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
