"""Where one training step of the CPU recipe goes, part by part, in the default memory format and channels-last.

    python benchmarks/speed_training_step.py --repeats 40 --rounds 2 --output results/speed_training_step

Replays :meth:`anomalib_maa.Maa.training_step`'s arithmetic on the recipe's model (KSDD's 640x256 grayscale, 128x128
tiles, n_features 4, Markov layer 3, batch 8 split into 4 set-A and 4 set-B crops, healing 0.5) outside Lightning:
the generator's forward pass, the discriminator's two passes and update, and the generator's loss, backward pass
and update, each timed (median over ``--repeats`` steps after a warm-up). Rounds alternate the default (NCHW) format
and channels-last (model and crops converted), so both see the same machine load. Prints and writes
``training_step.md``. This is the step alone: the whole fit through Lightning is ``speed_training.py``'s.
``--layers`` also times the generator's four full-resolution 1x7 / 7x1 convolutions alone (forward and backward on
4 crops), in both formats.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from anomalib_maa.models.maa.loss import DiscriminatorLoss, GeneratorLoss
from anomalib_maa.models.maa.synthetic import synthetic_defects
from anomalib_maa.models.maa.torch_model import MaaModel

PARTS = ("generator forward", "discriminator passes", "discriminator backward + step", "generator loss",
         "generator backward + step")  # fmt: skip


def _step(model: MaaModel, optimizers, losses, x_a: torch.Tensor, x_b: torch.Tensor) -> dict[str, float]:
    generator, discriminator = model.generator, model.discriminator
    opt_g, opt_d = optimizers
    loss_g_fn, loss_d_fn = losses
    times, start = {}, time.perf_counter()

    def lap(name: str) -> None:
        nonlocal start
        times[name] = time.perf_counter() - start
        start = time.perf_counter()

    fake = generator(synthetic_defects(x_a, 0.5)[0])
    lap(PARTS[0])
    logits_real, f_real = discriminator(x_b)
    logits_fake, _ = discriminator(fake.detach())
    loss_d = loss_d_fn(logits_real, logits_fake)
    opt_d.zero_grad(set_to_none=True)
    lap(PARTS[1])
    loss_d.backward()
    opt_d.step()
    lap(PARTS[2])
    logits_fake, f_fake = discriminator(fake)
    loss_g, _ = loss_g_fn(f_real.detach(), f_fake, logits_fake, x_a, fake)
    opt_g.zero_grad(set_to_none=True)
    lap(PARTS[3])
    loss_g.backward()
    opt_g.step()
    lap(PARTS[4])
    return times


def measure(channels_last: bool, repeats: int) -> dict[str, float]:
    """Median seconds of each part over ``repeats`` steps (after 5 warm-up steps)."""
    torch.manual_seed(0)
    model = MaaModel((640, 256), in_channels=1, n_features=4, feature_layer=3, score="map_max", tile_size=(128, 128))
    model.train()
    x_a, x_b = torch.rand(4, 1, 128, 128) * 2 - 1, torch.rand(4, 1, 128, 128) * 2 - 1
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x_a, x_b = (x.contiguous(memory_format=torch.channels_last) for x in (x_a, x_b))
    optimizers = [
        torch.optim.Adam(part.parameters(), 1e-3, betas=(0.5, 0.999), fused=True)
        for part in (model.generator, model.discriminator)
    ]
    losses = (GeneratorLoss(1.0, 50.0), DiscriminatorLoss())
    for _ in range(5):
        _step(model, optimizers, losses, x_a, x_b)
    steps = [_step(model, optimizers, losses, x_a, x_b) for _ in range(repeats)]
    medians = {part: statistics.median(step[part] for step in steps) for part in PARTS}
    medians["step"] = statistics.median(sum(step.values()) for step in steps)
    return medians


LAYERS = ((1, 4, (1, 7)), (4, 8, (7, 1)), (8, 4, (7, 1)), (4, 1, (1, 7)))
"""The recipe's full-resolution convolutions: (in channels, out channels, kernel)."""


def layer_ms(in_channels: int, out_channels: int, kernel: tuple[int, int], channels_last: bool, n: int = 30) -> float:
    """Mean ms of one forward and backward pass of a convolution on 4 crops of 128x128."""
    conv = torch.nn.Conv2d(in_channels, out_channels, kernel, padding=(kernel[0] // 2, kernel[1] // 2), bias=False)
    x = torch.randn(4, in_channels, 128, 128)
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    for _ in range(3):
        conv(x).sum().backward()
    start = time.perf_counter()
    for _ in range(n):
        conv(x).sum().backward()
    return 1000 * (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--layers", action="store_true", help="also time the four full-resolution convolutions")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for round_ in range(args.rounds):
        for channels_last in (False, True):
            rows.append({"round": round_, "format": "channels-last" if channels_last else "NCHW",
                         **measure(channels_last, args.repeats)})  # fmt: skip
    header = ["round", "format", *PARTS, "step"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join([str(r["round"]), r["format"]] + [f"{1000 * r[k]:.1f}" for k in (*PARTS, "step")]) + " |"
        for r in rows
    ]
    text = f"ms per training step ({args.threads} thread(s), median of {args.repeats})\n\n" + "\n".join(lines) + "\n"
    if args.layers:
        text += "\n| layer | NCHW ms | channels-last ms |\n|---|---|---|\n"
        for cin, cout, kernel in LAYERS:
            text += f"| {cin}->{cout}, {kernel[0]}x{kernel[1]} | {layer_ms(cin, cout, kernel, False):.1f} | "
            text += f"{layer_ms(cin, cout, kernel, True):.1f} |\n"
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "training_step.md").write_text(text, encoding="utf-8")
    print(text)  # noqa: T201


if __name__ == "__main__":
    main()
