"""pix2pix on the real facades, minigan beside the PyTorch reference, same data and iterations.

Trains on a folder of pix2pix A|B facades (e.g. ../shared/data/facades/train: 360 train and 40
validation images by minigan's fixed split) at 256 x 256, batch 1, in each direction:
  BtoA (label map -> photo): validation L1 = mean |G(x) - y| in [-1, 1] units;
  AtoB (photo -> label map): per-pixel class accuracy, each output pixel taken to the nearest of
  the 12 label colours (both with the reference script's palette jet((k-1)/11), as it scores,
  and with the measured colours of the label maps, minigan.datasets.LABEL_COLORS).
G is scored as the paper tests it (dropout and batch statistics on) and in eval mode. The
reference, ../shared/bench/torch_pix2pix_train.py, is run as a subprocess on the same split, for
each of --torch-seeds. Sample grids (input | output | target) go to --out.

    python benchmarks/pix2pix_quality.py [--iterations 1000] [--directions BtoA,AtoB]
        [--data ../shared/data/facades/train] [--torch-seeds 0,1] [--skip-minigan]
        [--out bench_results/quality]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy

import reference
from minigan.datasets import (BatchIterator, FacadeDataset,
                              colors_to_classes)
from minigan.datasets.facade import natural_key, split_indices
from minigan.gans import pix2pix
from minigan.visualize import save_image, tile, to_uint8

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = reference.shared_dir()


def jet(v):
    """The reference script's guess at the label colours, in [-1, 1]."""
    return [min(max(1.5 - abs(4 * v - k), 0.0), 1.0) * 2 - 1 for k in (3, 2, 1)]


JET_PALETTE = numpy.array([jet(i / 11) for i in range(12)], numpy.float32)


def classes_jet(img):
    """Nearest jet((k-1)/11) colour of each pixel of (N, 3, H, W) in [-1, 1]."""
    d = ((img.transpose(0, 2, 3, 1)[..., None, :] - JET_PALETTE) ** 2).sum(-1)
    return d.argmin(-1)


def classes_measured(img):
    rgb = numpy.clip((img.transpose(0, 2, 3, 1) + 1) * 127.5 + 0.5, 0, 255).astype(numpy.uint8)
    return numpy.stack([colors_to_classes(im) for im in rgb])


def scores(G, val, paper_mode, direction):
    """Mean L1 over the validation set, and (AtoB) the two per-pixel accuracies."""
    l1, acc_jet, acc_measured = [], [], []
    for i in range(len(val)):
        x, y = (a[None] for a in val.get_example(i))
        out = pix2pix.translate(G, x, paper_mode=paper_mode)
        l1.append(float(numpy.abs(out - y).mean()))
        if direction == "AtoB":
            acc_jet.append(float((classes_jet(out) == classes_jet(y)).mean()))
            acc_measured.append(float((classes_measured(out) == classes_measured(y)).mean()))
    mean = lambda v: float(numpy.mean(v)) if v else None
    return {"l1": mean(l1), "acc_jet": mean(acc_jet), "acc_measured": mean(acc_measured)}


def grid(G, val, path, n=6):
    rows = []
    for i in range(min(n, len(val))):
        x, y = (a[None] for a in val.get_example(i))
        out = numpy.clip(pix2pix.translate(G, x), -1, 1)
        rows += [to_uint8(x[0]), to_uint8(out[0]), to_uint8(y[0])]
    save_image(tile(numpy.stack(rows), ncol=3), path)


def train_minigan(data, direction, iterations, seed, out):
    """Train minigan's pix2pix with the reference's recipe; returns scores and s/iteration."""
    kw = dict(size=256, direction=direction, labels="color")
    train, val = FacadeDataset(data, "train", **kw), FacadeDataset(data, "val", **kw)
    numpy.random.seed(seed)
    c = pix2pix.Config(in_channels=3, out_channels=3)
    models, optimizers = pix2pix.build(c)
    updater = pix2pix.Updater(c, models, optimizers)
    t0 = time.perf_counter()
    with BatchIterator(train, 1, seed=seed, n_workers=1) as it:
        for i in range(iterations):
            updater.update(next(it))
            if (i + 1) % 100 == 0:
                print(f"  minigan {direction} {i + 1}/{iterations} "
                      f"{(time.perf_counter() - t0) / (i + 1):.2f} s/it", file=sys.stderr, flush=True)
    seconds = (time.perf_counter() - t0) / iterations
    G = models["gen"]
    grid(G, val, os.path.join(out, f"minigan_{direction}.png"))
    return {"paper_mode": scores(G, val, True, direction),
            "eval_mode": scores(G, val, False, direction), "seconds_per_iteration": seconds}


def split_folders(data, tmp):
    """train/ and val/ folders of links, following minigan's fixed split, for the reference."""
    names = sorted((f for f in os.listdir(data) if f.lower().endswith(".jpg")), key=natural_key)
    for split in ("train", "val"):
        os.makedirs(os.path.join(tmp, split))
        for i in split_indices(len(names), split):
            os.symlink(os.path.abspath(os.path.join(data, names[i])),
                       os.path.join(tmp, split, names[i]))
    return os.path.join(tmp, "train"), os.path.join(tmp, "val")


def train_torch(script, train_dir, val_dir, direction, iterations, seed, out):
    doc_path = os.path.join(out, f"torch_{direction}_seed{seed}.json")
    cmd = [sys.executable, script, "--train", train_dir, "--val", val_dir, "--direction",
           direction, "--iterations", str(iterations), "--val-every", str(iterations),
           "--seed", str(seed), "--grid", os.path.join(out, f"torch_{direction}_seed{seed}.png"),
           "--out", doc_path]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=os.path.dirname(script))
    doc = json.load(open(doc_path))
    last = doc["curve"][-1]
    return {"paper_mode": {"l1": last["val_l1_train_mode"], "acc_jet": last["val_acc_train_mode"]},
            "eval_mode": {"l1": last["val_l1_eval_mode"], "acc_jet": last["val_acc_eval_mode"]},
            "seconds_per_iteration": doc["seconds_per_iteration_incl_val"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(SHARED, "data", "facades", "train"))
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--directions", default="BtoA,AtoB")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--torch-seeds", default="0,1", help="empty for no reference run")
    ap.add_argument("--skip-minigan", action="store_true", help="run only the reference")
    ap.add_argument("--torch-script", default=os.path.join(SHARED, "bench", "torch_pix2pix_train.py"))
    ap.add_argument("--out", default="bench_results/pix2pix_quality")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    results = {}        # run name -> direction -> scores
    with tempfile.TemporaryDirectory() as tmp:
        train_dir, val_dir = split_folders(args.data, tmp)
        for direction in args.directions.split(","):
            if not args.skip_minigan:
                r = train_minigan(args.data, direction, args.iterations, args.seed, args.out)
                results.setdefault("minigan", {})[direction] = r
                print(json.dumps({"minigan": {direction: r}}), file=sys.stderr, flush=True)
            for seed in filter(None, args.torch_seeds.split(",")):
                r = train_torch(args.torch_script, train_dir, val_dir, direction,
                                args.iterations, int(seed), args.out)
                results.setdefault(f"PyTorch seed {seed}", {})[direction] = r
                print(json.dumps({f"PyTorch seed {seed}": {direction: r}}), file=sys.stderr,
                      flush=True)
            json.dump(results, open(os.path.join(args.out, "results.json"), "w"), indent=1)
    print(f"\npix2pix on facades, {args.iterations} iterations, batch 1, 256x256; validation on "
          "the fixed 40-image split; paper mode (dropout and batch statistics on), eval mode in "
          "brackets")
    print("| run | BtoA L1 | AtoB accuracy, jet/11 palette | AtoB accuracy, measured palette "
          "| s/it |")
    print("|---|---|---|---|---|")
    for run, by_direction in results.items():
        cells = [_cell(by_direction.get("BtoA"), "l1"), _cell(by_direction.get("AtoB"), "acc_jet"),
                 _cell(by_direction.get("AtoB"), "acc_measured")]
        sec = numpy.mean([r["seconds_per_iteration"] for r in by_direction.values()])
        print(f"| {run} | " + " | ".join(cells) + f" | {sec:.2f} |")


def _cell(r, key):
    if r is None or r["paper_mode"].get(key) is None:
        return "-"
    return f"{r['paper_mode'][key]:.4f} ({r['eval_mode'][key]:.4f})"


if __name__ == "__main__":
    main()
