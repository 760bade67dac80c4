"""Lightweight GAN quality: minigan and its PyTorch twin trained side by side from the same
initial weights, the same batches, latents and noise maps, with FID at fixed steps.

Both take the step of benchmarks/lightweight_speed.py (hinge on both heads, decoder 1's MSE,
the penalty every --gp-every steps, Adam(2e-4, (0.5, 0.9)), then G), without augmentation and
EMA, which the twin does not have. Only float rounding differs between the two runs, so their
FIDs at equal steps should agree within the noise of an FID of --fid-images images.

FID (EfficientNet-lite0) of --fid-images generated images (test-mode BN, fixed latents) against
the training images at the training size, both resized to 224 the same way. Writes DIR/log.jsonl,
DIR/fid.png and DIR/{minigan,torch}-{step}.png grids.

Usage: python benchmarks/lightweight_quality.py --data ../shared/data/ramen [--size 64]
       [--steps 2000] [--fid-every 500] [--fmap-max 128] [--out results/lightweight-quality]
"""
import argparse
import json
import os
import time

import numpy

from minigan import metrics
from minigan.datasets.image_folder import ImageFolderDataset
from minigan.gans import lightweight as lw
from minigan.visualize import save_image, tile, to_uint8

import reference
from lightweight_speed import draws, minigan_step, torch_step   # the same steps


def samples(torch, G, tG, z, noise, batch=50):
    """G's and the twin's images of the same latents, test-mode BN, (n, C, S, S) float32."""
    ours, theirs = [], []
    tG.eval()
    for i in range(0, len(z), batch):
        zi, ni = z[i:i + batch], [m[i:i + batch] for m in noise]
        ours.append(lw.generate(G, zi, ni))
        with torch.no_grad():
            theirs.append(tG(torch.from_numpy(zi), [torch.from_numpy(m) for m in ni]).numpy())
    tG.train()
    return numpy.concatenate(ours), numpy.concatenate(theirs)


def plot(log, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.2))
    steps = [r["step"] for r in log]
    ax.plot(steps, [r["fid_minigan"] for r in log], "o-", label="minigan")
    ax.plot(steps, [r["fid_torch"] for r in log], "s--", label="PyTorch twin")
    ax.set_xlabel("step")
    ax.set_ylabel(metrics.LABEL)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="A folder of training images (ramen).")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--fid-every", type=int, default=500)
    ap.add_argument("--fid-images", type=int, default=500)
    ap.add_argument("--fmap-max", type=int, default=128, help="Width cap of G and D (512 is "
                    "lucidrains'; 128 keeps a 64 px step under a second on 2 cores).")
    ap.add_argument("--gp-every", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="results/lightweight-quality")
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)

    data = ImageFolderDataset(a.data, size=a.size, channels=3)
    real = numpy.stack([data.get_example(i)[0] for i in range(len(data))])   # (n, 3, S, S) in [-1, 1]
    real_stats = metrics.Statistics.of(metrics.array_features(real))
    c = lw.Config.for_data((3, a.size, a.size), fmap_max=a.fmap_max, gp_every=a.gp_every)
    numpy.random.seed(a.seed)
    models, opts = lw.build(c)
    G, D = models["gen"], models["dis"]
    _, tG, tD = reference.tests_module("lightweight_twin").torch_twin(c, G, D)
    tG, tD = tG.float(), tD.float()
    oG = torch.optim.Adam(tG.parameters(), c.alpha, (c.beta1, c.beta2))
    oD = torch.optim.Adam(tD.parameters(), c.alpha, (c.beta1, c.beta2))
    count = lambda net: sum(p.size for p in net.params())
    print(f"{len(data)} images at {a.size} px, batch {a.batch}, fmap_max {a.fmap_max}: "
          f"G {count(G):,} D {count(D):,} parameters", flush=True)

    rng = numpy.random.RandomState(a.seed + 1)         # the one source of both runs' draws
    z_eval, noise_eval = draws(numpy.random.RandomState(a.seed + 2), c, G, a.fid_images)
    log, clock = [], {"minigan": 0.0, "torch": 0.0}
    logfile = open(os.path.join(a.out, "log.jsonl"), "w")
    order = []
    for step in range(1, a.steps + 1):
        if not order:                                   # epochs of a shared random order
            order = list(rng.permutation(len(data)))
        idx = [order.pop() for _ in range(min(a.batch, len(order)))]
        x = real[idx]
        z, noise = draws(rng, c, G, len(x))
        z_g, noise_g = draws(rng, c, G, len(x))
        gp = c.gp_every > 0 and step % c.gp_every == 0
        t = time.perf_counter()
        loss_m = minigan_step(c, G, D, opts, x, z, noise, z_g, noise_g, gp)
        clock["minigan"] += time.perf_counter() - t
        t = time.perf_counter()
        loss_t = torch_step(torch, c, tG, tD, oG, oD, x, z, noise, z_g, noise_g, gp)
        clock["torch"] += time.perf_counter() - t
        if step % a.fid_every == 0 or step == a.steps:
            ours, theirs = samples(torch, G, tG, z_eval, noise_eval)
            fid_m = metrics.compare(real_stats, metrics.Statistics.of(
                metrics.array_features(ours))).fid
            fid_t = metrics.compare(real_stats, metrics.Statistics.of(
                metrics.array_features(theirs))).fid
            row = {"step": step, "fid_minigan": fid_m, "fid_torch": fid_t,
                   "loss_dis_minigan": loss_m, "loss_dis_torch": loss_t,
                   "seconds_minigan": clock["minigan"], "seconds_torch": clock["torch"]}
            log.append(row)
            logfile.write(json.dumps(row) + "\n")
            logfile.flush()
            save_image(tile(to_uint8(ours[:64])), os.path.join(a.out, f"minigan-{step}.png"))
            save_image(tile(to_uint8(theirs[:64])), os.path.join(a.out, f"torch-{step}.png"))
            plot(log, os.path.join(a.out, "fid.png"))
            print(f"step {step}: {metrics.LABEL} minigan {fid_m:.2f}  twin {fid_t:.2f}  "
                  f"(ratio {fid_m / fid_t:.3f}); training s minigan {clock['minigan']:.0f} "
                  f"twin {clock['torch']:.0f}", flush=True)
    logfile.close()


if __name__ == "__main__":
    main()
