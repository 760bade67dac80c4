"""ProjectedGAN against Lightweight GAN on the same faces: FID at equal steps and equal time.

The paper's claim (Sauer et al. 2021): judged through a frozen ImageNet network, a GAN gets there
faster. This runs the two commands a user would type, side by side, one CPU core each (taskset,
one BLAS thread), both at batch 8 and one round per step, FID (EfficientNet-lite0) of the same
number of generated images against the training folder. Each command measures as its reference
does: ProjectedGAN the EMA generator (projected-gan's metrics), Lightweight GAN the plain one
(lucidrains' --calculate-fid-every). Training time is the trainers' `elapsed` (log.jsonl), which
leaves out the FID evaluations and the snapshots.

Then it draws OUT/fid.png (FID against steps and against training minutes), OUT/grid.png (16
faces of each final EMA generator, fixed latents; ProjectedGAN on top) and prints the table.

Usage: python benchmarks/projected_vs_lightweight.py --data ../shared/data/faces64 [--out DIR]
           [--steps-projected 640] [--steps-lightweight 3200] [--fid-images 300]
       python benchmarks/projected_vs_lightweight.py --out DIR --plot-only [--final-fid 2000]
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy

ONE_THREAD = {k: "1" for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                               "NUMBA_NUM_THREADS")}


def commands(a):
    """The two command lines: batch 8, one round per step, FID every --fid-every-* steps."""
    cli = [sys.executable, "-m", "minigan.cli"]
    tick = a.fid_every_projected * 8 / 1000 / 2          # kimg; FID every 2 ticks
    projected = cli + ["projected", "--data", a.data, "--outdir", os.path.join(a.out, "projected"),
                       "--batch", "8", "--cbase", str(a.cbase), "--mirror", "1",
                       "--kimg", str(a.steps_projected * 8 / 1000), "--tick", str(tick),
                       "--snap", "2", "--metrics", "fid", "--fid-images", str(a.fid_images),
                       "--workers", "0"]
    lightweight = cli + ["lightweight", "--data", a.data, "--name", "faces",
                         "--results-dir", os.path.join(a.out, "results"),
                         "--models-dir", os.path.join(a.out, "models"),
                         "--image-size", str(a.size), "--batch-size", "8",
                         "--gradient-accumulate-every", "1", "--fmap-max", str(a.fmap_max),
                         "--attn-res-layers", "[]",           # the paper's networks
                         "--num-train-steps", str(a.steps_lightweight),
                         "--evaluate-every", "400", "--save-every", "400",
                         "--calculate-fid-every", str(a.fid_every_lightweight),
                         "--calculate-fid-num-images", str(a.fid_images), "--workers", "0"]
    return {"projected": projected, "lightweight": lightweight}


def race(a):
    """Both commands at once, one core each where taskset exists; waits for both."""
    os.makedirs(a.out, exist_ok=True)
    pin = shutil.which("taskset") and (os.cpu_count() or 1) >= 2
    procs = {}
    for core, (name, cmd) in enumerate(commands(a).items()):
        cmd = ["taskset", "-c", str(core)] + cmd if pin else cmd
        print(" ".join(cmd), flush=True)
        with open(os.path.join(a.out, f"{name}.out"), "w") as f:
            procs[name] = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                           env={**os.environ, **ONE_THREAD})
    for name, p in procs.items():
        if p.wait():
            sys.exit(f"{name} failed: see {os.path.join(a.out, name + '.out')}")


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def run_folder(out, name):
    """The folder with log.jsonl and fid.jsonl of one command's run."""
    if name == "lightweight":
        return os.path.join(out, "results", "faces")
    return sorted(glob.glob(os.path.join(out, "projected", "0*")))[-1]


def curve(folder):
    """(steps, training minutes, FID) at each evaluation; minutes interpolated from log.jsonl."""
    log, fid = (read_jsonl(os.path.join(folder, f)) for f in ("log.jsonl", "fid.jsonl"))
    it = [0] + [r["iteration"] for r in log]
    elapsed = [0.0] + [r["elapsed"] for r in log]
    steps = numpy.array([r["iteration"] for r in fid])
    return steps, numpy.interp(steps, it, elapsed) / 60, numpy.array([r["fid"] for r in fid])


def final_snapshot(out, name):
    """The last snapshot file of one command's run."""
    from minigan.training import snapshots
    if name == "lightweight":
        return snapshots(os.path.join(out, "models", "faces"), "model_*.h5")[-1]
    return snapshots(run_folder(out, name), "network-snapshot-*.h5")[-1]


def ema_images(path, n, seed):
    """n images (in batches of 50) of the snapshot's EMA generator from fixed latents, and that
    G's parameter count."""
    import minigan
    trained = minigan.load(path)
    G = trained.models["gen_ema"]
    z = trained.module.sample_z(trained.config, n, numpy.random.RandomState(seed))
    x = numpy.concatenate([numpy.asarray(trained.module.generate(G, z[i:i + 50]))
                           for i in range(0, n, 50)])
    return x, G.count_params()


def snapshot_fids(data, paths, n, seed=1):
    """{path: FID of n images of the snapshot's EMA generator (the G the grid shows)}."""
    from minigan import metrics
    stats = metrics.statistics(data)
    return {path: metrics.fid_of_samples(ema_images(path, n, seed)[0], stats).fid
            for path in paths}


def plot(curves, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3), sharey=True)
    for name, (steps, minutes, fid) in curves.items():
        axes[0].plot(steps, fid, "o-", ms=3, label=name)
        axes[1].plot(minutes, fid, "o-", ms=3, label=name)
    axes[0].set_xlabel("step (batch 8)")
    axes[1].set_xlabel("training minutes (one CPU core each)")
    axes[0].set_ylabel("FID (EfficientNet-lite0)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(a):
    from minigan.visualize import save_image, tile, to_uint8
    curves = {name: curve(run_folder(a.out, name)) for name in ("projected", "lightweight")}
    plot(curves, os.path.join(a.out, "fid.png"))
    names = ("projected", "lightweight")
    faces = {name: ema_images(final_snapshot(a.out, name), 16, seed=0) for name in names}
    grid = tile(to_uint8(numpy.concatenate([faces[name][0] for name in names])), ncol=16)
    save_image(grid, os.path.join(a.out, "grid.png"))
    print("G parameters: " + ", ".join(f"{name} {faces[name][1] / 1e6:.2f}M" for name in names))
    print(f"{'':12s} {'step':>6s} {'minutes':>8s} {'FID':>8s}")
    for name, (steps, minutes, fid) in curves.items():
        for s, m, f in zip(steps, minutes, fid):
            print(f"{name:12s} {s:6d} {m:8.1f} {f:8.2f}")
    print(f"wrote {os.path.join(a.out, 'fid.png')} and {os.path.join(a.out, 'grid.png')}")
    if a.final_fid:
        paths = [final_snapshot(a.out, name) for name in ("projected", "lightweight")]
        print(f"FID (EfficientNet-lite0) of {a.final_fid} images of the last EMA generators:")
        for path, fid in snapshot_fids(a.data, paths, a.final_fid).items():
            print(f"  {os.path.relpath(path, a.out):60s} {fid:8.2f}", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=os.path.join("..", "shared", "data", "faces64"))
    p.add_argument("--out", default=os.path.join("results", "projected-vs-lightweight"))
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--cbase", type=int, default=64, help="ProjectedGAN's ngf")
    p.add_argument("--fmap-max", type=int, default=64, help="Lightweight GAN's widest layer")
    p.add_argument("--steps-projected", type=int, default=640)
    p.add_argument("--steps-lightweight", type=int, default=3200)
    p.add_argument("--fid-every-projected", type=int, default=80)
    p.add_argument("--fid-every-lightweight", type=int, default=160)
    p.add_argument("--fid-images", type=int, default=300)
    p.add_argument("--plot-only", action="store_true", help="only read OUT and draw")
    p.add_argument("--final-fid", type=int, default=0, metavar="N",
                   help="also the FID of N images of each last snapshot")
    a = p.parse_args()
    if not a.plot_only:
        race(a)
    report(a)


if __name__ == "__main__":
    main()
