"""Lightweight GAN: gradient checks of the FastGAN blocks and the whole D (second order, the
penalty's), a PyTorch twin of G and D equal to 1e-10 in float64, and the command end to end on
ramen (outputs, continue, exact resume, --new, --generate, --load-from, bad input)."""
import json
import os

import h5py
import numpy
import pytest

from helpers import check_op, error_line, randn, run, shared
from lightweight_twin import torch_twin
from minigan.gans import lightweight as lw
from minigan.gradient_check import check_backward, check_double_backward
from minigan.links import fastgan as B

F64 = numpy.float64


def test_noise_injection_grad_first_and_second_order():
    noise = randn(2, 1, 3, 3, seed=1)
    link = B.NoiseInjection(4, dtype=F64)
    link.weight.array[...] = randn(4, seed=2)
    fn = lambda x: link(x, noise)
    ref = lambda x: x + link.weight.array.reshape(1, 4, 1, 1) * noise
    check_op(fn, [randn(2, 4, 3, 3)], ref, params=[link.weight])


@pytest.mark.parametrize("block", ["up", "sle", "down", "init", "decoder"])
def test_block_gradients(block):
    numpy.random.seed(0)
    if block == "up":
        link, x = B.UpBlock(3, 2, dtype=F64), [randn(2, 3, 4, 4)]
        fn = lambda x: link(x, randn(2, 1, 8, 8, seed=3))
    elif block == "sle":
        link, x = B.SLE(3, 2, dtype=F64), [randn(2, 3, 8, 8), randn(2, 2, 16, 16, seed=1)]
        fn = link
    elif block == "down":
        link, x = B.DownBlock(2, 3, dtype=F64), [randn(3, 2, 8, 8)]
        fn = link
    elif block == "init":
        link, x = B.InitBlock(4, 2, dtype=F64), [randn(3, 4)]
        fn = link
    else:
        link, x = B.SimpleDecoder(4, 1, 1, dtype=F64), [randn(2, 4, 4, 4)]
        fn = link
    check_backward(fn, x, params=list(link.params()), eps=1e-6, atol=1e-4, rtol=1e-3)
    if block in ("sle", "down"):        # D's pieces sit under the gradient penalty
        check_double_backward(fn, x, atol=1e-3, rtol=1e-2)


def tiny(size=32, **kw):
    return lw.Config.for_data((1, size, size), fmap_max=4, n_z=4, **kw)


def test_whole_discriminator_grad_first_and_second_order():
    numpy.random.seed(0)
    D = lw.Discriminator(tiny(), dtype=F64)
    fn = lambda x: D(x)[:2]         # both heads' logits: what the penalty differentiates
    x = [randn(2, 1, 32, 32)]
    check_backward(fn, x, atol=1e-4, rtol=1e-3)
    check_double_backward(fn, x, atol=1e-3, rtol=1e-2)


def test_config_refuses_sizes_that_are_not_powers_of_2():
    with pytest.raises(ValueError, match="power of 2"):
        lw.Config.for_data((3, 48, 48))
    assert lw.Config.for_data((3, 256, 256)).sle == ((8, 128), (16, 256))
    assert lw.Config.for_data((3, 1024, 1024)).sle[-1] == (64, 1024)
    c = lw.Config.for_data((3, 64, 64))
    assert lw.Config.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_channel_table_at_256():
    c = lw.Config.for_data((3, 256, 256))
    assert [lw.g_width(c, r) for r in (4, 8, 16, 32, 64, 128, 256)] == \
        [256, 512, 512, 256, 128, 64, 32]


# -- the PyTorch twin (tests/lightweight_twin.py) -------------------------------------------------

def test_pytorch_twin_of_g_and_d_in_float64():
    c = lw.Config.for_data((3, 64, 64), fmap_max=16, n_z=8)
    numpy.random.seed(0)
    G, D = lw.Generator(c, F64), lw.Discriminator(c, F64)
    for blk in G.ups:                       # a non-zero noise scale, so the noise path counts
        blk.noise.weight.array[...] = numpy.random.randn(*blk.noise.weight.shape)
    pytest.importorskip("torch")
    torch, tG, tD = torch_twin(c, G, D)
    count = lambda net: sum(p.size for p in net.params())
    tcount = lambda m: sum(p.numel() for p in m.parameters())
    dec = lambda m: sum(p.numel() for p in m.dec2.parameters())
    print(f"G {count(G)} / torch {tcount(tG)}; D {count(D)} / torch {tcount(tD)} (dec2 "
          f"{dec(tD)} not run by the twin)")
    assert count(G) == tcount(tG) and count(D) == tcount(tD)
    z = numpy.random.randn(4, 8)
    noise = [numpy.random.randn(*s) for s in G.noise_shapes(4)]
    x = G(z, noise)
    tx = tG(torch.tensor(z), [torch.tensor(n) for n in noise])
    numpy.testing.assert_allclose(x.array, tx.detach().numpy(), atol=1e-10, rtol=0)
    y, y_small, f8, _ = D(x.array)
    ty, ty_small, trec = tD(torch.tensor(x.array))
    numpy.testing.assert_allclose(y.array, ty.detach().numpy(), atol=1e-10, rtol=0)
    numpy.testing.assert_allclose(y_small.array, ty_small.detach().numpy(), atol=1e-10, rtol=0)
    numpy.testing.assert_allclose(D.dec1(f8).array, trec.detach().numpy(), atol=1e-10, rtol=0)


# -- the command on ramen ------------------------------------------------------------------------

TINY = ["--image-size", 32, "--batch-size", 4, "--gradient-accumulate-every", 2,
        "--fmap-max", 8, "--latent-dim", 8, "--num-image-tiles", 2, "--aug-prob", 0.5,
        "--workers", 0, "--log-every", 5]


@pytest.fixture
def ramen(tmp_path, monkeypatch):
    """64 ramen photos in tmp_path/data; the working directory is tmp_path."""
    src = shared("ramen")
    files = sorted(f for f in os.listdir(src) if f.endswith(".jpg"))[:64]
    os.makedirs(tmp_path / "data")
    for f in files:
        os.symlink(os.path.join(src, f), tmp_path / "data" / f)
    monkeypatch.chdir(tmp_path)
    return "data"


def params(path):
    with h5py.File(path, "r") as f:
        out = {}
        f["models"].visititems(lambda k, v: out.__setitem__(k, v[()])
                               if isinstance(v, h5py.Dataset) else None)
        return out


def log(name="r"):
    return [json.loads(l) for l in open(f"results/{name}/log.jsonl")]


def test_train_outputs_recon_falls_and_ema_differs(ramen):
    code, out = run("lightweight", "--data", ramen, "--name", "r", *TINY,
                    "--num-train-steps", 40, "--save-every", 20, "--evaluate-every", 20)
    assert code == 0, out
    assert {"1.jpg", "1-ema.jpg", "2.jpg", "2-ema.jpg", "log.jsonl", "loss.png"} \
        <= set(os.listdir("results/r"))
    assert {"model_1.h5", "model_2.h5", "config.json"} <= set(os.listdir("models/r"))
    records = log()
    assert all(numpy.isfinite(v) for r in records for v in r.values())
    assert records[-1]["loss/recon"] < records[0]["loss/recon"], records
    p = params("models/r/model_2.h5")
    ema = [k for k in p if k.startswith("gen_ema/")]
    assert ema and any((p[k] != p["gen/" + k[8:]]).any() for k in ema)


def test_resume_is_exact_and_new_moves_aside(ramen):
    common = ["--data", ramen, *TINY, "--save-every", 3, "--evaluate-every", 3]
    assert run("lightweight", "--name", "straight", *common, "--num-train-steps", 6)[0] == 0
    assert run("lightweight", "--name", "split", *common, "--num-train-steps", 3)[0] == 0
    code, out = run("lightweight", "--name", "split", *common, "--num-train-steps", 6)
    assert code == 0 and "continuing from" in out, out
    a, b = params("models/straight/model_2.h5"), params("models/split/model_2.h5")
    assert a.keys() == b.keys() and all(numpy.array_equal(a[k], b[k]) for k in a)
    code, out = run("lightweight", "--name", "split", *common, "--num-train-steps", 3, "--new")
    assert code == 0 and "moved the earlier" in out, out
    assert os.path.isfile("models/split-old-1/model_2.h5")
    assert sorted(os.listdir("models/split")) == ["config.json", "model_1.h5"]


def test_generate_interpolation_and_load_from(ramen):
    assert run("lightweight", "--data", ramen, "--name", "r", *TINY, "--num-train-steps", 4,
               "--save-every", 2, "--evaluate-every", 2)[0] == 0
    code, out = run("lightweight", "--name", "r", "--generate", "--num-image-tiles", 3)
    assert code == 0, out
    files = os.listdir("results/r-generated-2")
    assert len(files) == 6 and sum(f.endswith("-ema.jpg") for f in files) == 3
    code, out = run("lightweight", "--name", "r", "--generate", "--load-from", 1)
    assert code == 0 and os.path.isdir("results/r-generated-1"), out
    code, out = run("lightweight", "--name", "r", "--generate-interpolation",
                    "--interpolation-num-steps", 3, "--num-image-tiles", 2, "--save-frames")
    assert code == 0, out
    gifs = [f for f in os.listdir("results/r") if f.endswith(".gif")]
    assert len(gifs) == 1
    assert len(os.listdir(os.path.join("results/r", gifs[0][:-4]))) == 3


def test_bad_inputs_give_one_line(ramen, tmp_path):
    os.makedirs("empty")
    code, out = run("lightweight", "--data", "empty", "--name", "e", *TINY)
    assert code != 0 and "no images" in error_line(out)
    code, out = run("lightweight", "--data", "missing", "--name", "e", *TINY)
    assert code != 0 and "missing" in error_line(out)
    code, out = run("lightweight", "--data", ramen, "--name", "e", "--image-size", 48)
    assert code != 0 and "power of 2" in error_line(out)
    code, out = run("lightweight", "--name", "nothing", "--generate")
    assert code != 0 and "no model" in error_line(out)
    code, out = run("lightweight", "--data", ramen, "--name", "nothing", "--load-from", 7, *TINY)
    assert code != 0 and "model_7.h5 does not exist" in error_line(out)
    with open("data/broken.jpg", "wb") as f:
        f.write(b"not a jpeg")
    code, out = run("lightweight", "--data", ramen, "--name", "e", *TINY)
    assert code != 0 and "broken.jpg" in error_line(out)
    assert not os.path.exists("models/e") and not os.path.exists("models/nothing")
