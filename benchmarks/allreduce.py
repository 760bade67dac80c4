"""All-reduce of pix2pix's gradients on CPU ranks, and the step's scaling from 1 to 2 ranks,
minigan (MPI) beside PyTorch DDP (gloo).

    python benchmarks/allreduce.py [--reps 5] [--steps 2] [--torch-ref DIR]

1. all-reduce: comm.allreduce_grad of pix2pix's G and D (chainer-pix2pix's networks, ~57M
   float32 gradients) on 2 MPI ranks: seconds, and GB/s of gradient bytes per second, beside a
   memcpy of the same bytes and torch.distributed.all_reduce (gloo) of one tensor that size.
2. scaling: seconds per training step (256 x 256, batch 1 per rank) on 1 and 2 ranks, 1 BLAS
   thread each; efficiency = t(1 rank) / t(2 ranks) (weak scaling: 2 ranks do twice the work).
   The PyTorch twin is the reference torch_pix2pix.py wrapped in DistributedDataParallel.
On a 2-core machine shared with other work the figures are noisy; two ranks also compete for
the memory bandwidth a single rank had alone.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy

HERE = os.path.dirname(os.path.abspath(__file__))
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def report(**values):
    print("RESULT " + json.dumps(values), flush=True)


def pix2pix_updater(comm):
    from minigan import distributed
    from minigan.gans import pix2pix
    numpy.random.seed(0)
    c = pix2pix.Config()
    models, optimizers = pix2pix.build(c)
    if comm is not None:
        for net in models.values():
            comm.bcast_data(net)
        for opt in optimizers.values():
            distributed.create_multi_node_optimizer(opt, comm)
    return pix2pix.Updater(c, models, optimizers)


def worker_allreduce(reps):
    from minigan import distributed
    comm = distributed.MpiCommunicator()
    up = pix2pix_updater(None)
    n = sum(p.size for net in up.models.values() for p in net.params())
    for net in up.models.values():
        for p in net.params():
            p.grad = numpy.ones_like(p.array)
    times = []
    for _ in range(reps + 1):
        comm.barrier()
        t = time.perf_counter()
        for net in up.models.values():
            comm.allreduce_grad(net)
        times.append(time.perf_counter() - t)
    a = numpy.ones(n, numpy.float32)
    b = numpy.empty_like(a)
    copies = []
    for _ in range(reps):
        t = time.perf_counter()
        numpy.copyto(b, a)
        copies.append(time.perf_counter() - t)
    if comm.rank == 0:
        s, m = min(times[1:]), min(copies)
        report(kind="allreduce", params=n, seconds=s, gbps=4 * n / s / 1e9, memcpy_s=m,
               memcpy_gbps=4 * n / m / 1e9)


def batch(seed=0):
    rng = numpy.random.RandomState(seed)
    labels = rng.randint(0, 12, (1, 256, 256))
    x = (labels[:, None] == numpy.arange(12)[None, :, None, None]).astype(numpy.float32)
    return x, (rng.rand(1, 3, 256, 256) * 2 - 1).astype(numpy.float32)


def worker_minigan(steps):
    from minigan import distributed
    comm = distributed.MpiCommunicator()
    up = pix2pix_updater(comm)
    data = batch(comm.rank)
    times = []
    for _ in range(steps + 1):
        comm.barrier()
        t = time.perf_counter()
        up.update(data)
        times.append(time.perf_counter() - t)
    if comm.rank == 0:
        report(kind="step", impl="minigan", ranks=comm.size, seconds=min(times[1:]))


def worker_torch(steps, ref_dir, reps):
    import torch
    import torch.distributed as tdist
    import reference
    torch.set_num_threads(1)
    tdist.init_process_group("gloo")
    rank, size = tdist.get_rank(), tdist.get_world_size()
    flat = torch.ones(57_000_000)
    times = []
    for _ in range(reps + 1):
        tdist.barrier()
        t = time.perf_counter()
        tdist.all_reduce(flat)
        times.append(time.perf_counter() - t)
    ref = reference.load("torch_pix2pix", ref_dir)
    G, D, _, _, x, real = ref.build(1, seed=rank)
    n = sum(p.numel() for p in G.parameters()) + sum(p.numel() for p in D.parameters())
    G, D = torch.nn.parallel.DistributedDataParallel(G), \
        torch.nn.parallel.DistributedDataParallel(D)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    steps_t = []
    for _ in range(steps + 1):
        tdist.barrier()
        t = time.perf_counter()
        ref.iteration_shared(G, D, opt_g, opt_d, x, real)
        steps_t.append(time.perf_counter() - t)
    if rank == 0:
        if size > 1:
            s = min(times[1:])
            report(kind="torch_allreduce", params=57_000_000, seconds=s, gbps=4 * 57e6 / s / 1e9)
        report(kind="step", impl="torch-ddp", ranks=size, seconds=min(steps_t[1:]), params=n)
    tdist.destroy_process_group()


def launch(cmd, env=None):
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **ONE_THREAD,
                                                                    **(env or {})})
    results = [json.loads(l[7:]) for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    if out.returncode or not results:
        print(f"failed: {' '.join(cmd)}\n{out.stderr[-2000:]}", file=sys.stderr)
    return results


def torch_ranks(n, args):
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29533", "WORLD_SIZE": str(n)}
    cmd = [sys.executable, __file__, "--worker", "torch", "--steps", str(args.steps),
           "--reps", str(args.reps), "--torch-ref", args.torch_ref]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, **ONE_THREAD, **env, "RANK": str(r)})
             for r in range(n)]
    outs = [p.communicate() for p in procs]
    return [json.loads(l[7:]) for o, _ in outs for l in o.splitlines() if l.startswith("RESULT ")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", choices=["allreduce", "minigan", "torch"])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--torch-ref", default=None)
    args = ap.parse_args()
    if args.worker == "allreduce":
        return worker_allreduce(args.reps)
    if args.worker == "minigan":
        return worker_minigan(args.steps)
    if args.worker == "torch":
        return worker_torch(args.steps, args.torch_ref, args.reps)
    import shutil
    import reference
    args.torch_ref = reference.torch_ref_dir(args.torch_ref)
    mpiexec = shutil.which("mpiexec")
    me = [sys.executable, __file__, "--reps", str(args.reps), "--steps", str(args.steps)]
    results = launch([mpiexec, "-n", "2"] + me + ["--worker", "allreduce"])
    for n in (1, 2):
        results += launch([mpiexec, "-n", str(n)] + me + ["--worker", "minigan"])
    if args.torch_ref:
        for n in (1, 2):
            results += torch_ranks(n, args)
    for r in results:
        if r["kind"] == "allreduce":
            print(f"minigan allreduce_grad, 2 ranks, {r['params'] / 1e6:.1f}M float32: "
                  f"{r['seconds']:.3f} s = {r['gbps']:.2f} GB/s; memcpy of the same bytes "
                  f"{r['memcpy_s']:.3f} s = {r['memcpy_gbps']:.2f} GB/s")
        elif r["kind"] == "torch_allreduce":
            print(f"torch all_reduce (gloo), 2 ranks, 57.0M float32: {r['seconds']:.3f} s = "
                  f"{r['gbps']:.2f} GB/s")
    steps = {(r["impl"], r["ranks"]): r["seconds"] for r in results if r["kind"] == "step"}
    for impl in ("minigan", "torch-ddp"):
        if (impl, 1) in steps and (impl, 2) in steps:
            t1, t2 = steps[impl, 1], steps[impl, 2]
            print(f"{impl}: step 1 rank {t1:.2f} s, 2 ranks {t2:.2f} s (2x the examples): "
                  f"scaling efficiency {100 * t1 / t2:.0f}%")
    print("(2 shared cores, 1 thread per rank: noisy figures)")


if __name__ == "__main__":
    main()
