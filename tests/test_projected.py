"""ProjectedGAN: spectral norm (sigma against the SVD, gradients), a PyTorch twin of G and of D's
projections and discriminators in float64 (gradients too), the EMA schedule, and the command end
to end on 32 faces (outputs, fid.jsonl, exact resume, bad input on one line)."""
import json
import os
import shutil

import h5py
import numpy
import pytest

import minigan
from helpers import error_line, randn, run, shared
from minigan import links as L
from minigan.commands.projected import GLOB, image_size, kimg_label
from minigan.core import Variable, using_config
from minigan.gans import projected as P
from minigan.gradient_check import check_backward
from minigan.links.spectral_norm import SpectralNorm, spectral_norm
from minigan.training import snapshots

F64 = numpy.float64


def sn_layer(kind):
    numpy.random.seed(0)
    if kind == "conv":
        return SpectralNorm(L.Convolution2D(3, 5, 3, 1, 1, dtype=F64)), randn(2, 3, 5, 5)
    if kind == "deconv":
        return SpectralNorm(L.Deconvolution2D(4, 6, 4, 2, 1, dtype=F64)), randn(2, 4, 3, 3)
    return SpectralNorm(L.Linear(7, 3, dtype=F64)), randn(2, 7)


@pytest.mark.parametrize("kind", ["conv", "deconv", "linear"])
def test_power_iteration_finds_the_largest_singular_value(kind):
    sn, x = sn_layer(kind)
    for _ in range(500):                    # one iteration per training forward
        sn(x)
    W = sn._matrix(sn.link.W.array)
    sigma = numpy.linalg.svd(W, compute_uv=False)[0]
    assert float(sn.sigma().array) == pytest.approx(sigma, rel=1e-9)
    with using_config("train", False):      # the normalized weight has spectral norm 1
        W_sn = sn._matrix(sn.normalized_weight().array)
    assert numpy.linalg.svd(W_sn, compute_uv=False)[0] == pytest.approx(1.0, rel=1e-9)


def test_u_and_v_are_persistent_and_frozen_in_test_mode():
    sn, x = sn_layer("conv")
    assert [n for n, _ in sn.namedpersistents()] == ["/u", "/v"]
    assert [n for n, _ in sn.namedparams()] == ["/link/W", "/link/b"]
    u = sn.u.copy()
    with using_config("train", False):
        sn(x)
    numpy.testing.assert_array_equal(sn.u, u)
    sn(x)
    assert not numpy.array_equal(sn.u, u)


@pytest.mark.parametrize("kind", ["conv", "deconv", "linear"])
def test_spectral_norm_gradient_first_order(kind):
    """u, v constant within a step (test mode: no iteration). First order suffices: ProjectedGAN
    puts no gradient penalty on D."""
    sn, x = sn_layer(kind)
    sn(x)
    with using_config("train", False):
        check_backward(sn, [x], params=list(sn.params()), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_spectral_norm_wraps_the_convs_of_a_chain_in_place():
    seq = spectral_norm(L.Sequential(L.Convolution2D(2, 3, 3), lambda h: h, L.Linear(3, 2)))
    assert isinstance(seq[0], SpectralNorm) and isinstance(seq[2], SpectralNorm)
    assert [n for n, _ in seq.namedparams()] == ["/0/link/W", "/0/link/b", "/2/link/W",
                                                  "/2/link/b"]


# -- the PyTorch twin (tests/projected_twin.py) --------------------------------------------------

def tiny(size=64, **kw):
    return P.Config.for_data((3, size, size), ngf=4, ndf=8, n_z=8, batch=4, batch_gpu=4, **kw)


@pytest.mark.parametrize("lite", [True, False])
def test_pytorch_twin_of_g_in_float64(lite):
    torch = pytest.importorskip("torch")
    from projected_twin import twins
    numpy.random.seed(0)
    c = tiny(lite=lite)
    G = P.Generator(c, F64)
    if not lite:                            # non-zero noise scales, so the noise path counts
        for blk in G.ups:
            blk.noise1.weight.array[...], blk.noise2.weight.array[...] = numpy.random.randn(2, 1)
    tG, _ = twins(torch, G, P.Discriminator(c, F64))
    assert sum(p.size for p in G.params()) == sum(p.numel() for p in tG.parameters())
    z = numpy.random.randn(4, 8)
    noise = [numpy.random.randn(*s) for s in G.noise_shapes(4)]
    x = G(z, noise)                         # training mode: one power iteration per conv
    tz = torch.tensor(z, requires_grad=True)
    tx = tG(tz, [torch.tensor(n) for n in noise])
    numpy.testing.assert_allclose(x.array, tx.detach().numpy(), atol=1e-8, rtol=0)
    numpy.testing.assert_allclose(G.to_big.u, tG.to_big.weight_u.numpy(), atol=1e-12)
    gy = numpy.random.randn(*x.shape)
    x.grad = Variable(gy)
    x.backward()
    tx.backward(torch.tensor(gy))
    numpy.testing.assert_allclose(G.to_big.link.W.grad.array,
                                  tG.to_big.weight_orig.grad.numpy(), atol=1e-8)
    numpy.testing.assert_allclose(G.init.deconv.link.W.grad.array,
                                  tG.init.weight_orig.grad.numpy(), atol=1e-8)


def test_pytorch_twin_of_the_projections_and_discriminators_in_float64():
    torch = pytest.importorskip("torch")
    from projected_twin import twins
    numpy.random.seed(1)
    c = tiny()
    D = P.Discriminator(c, F64)
    _, tD = twins(torch, P.Generator(c, F64), D)
    assert D.projector.channels == [64, 64, 128, 256]
    # the taps of a 224 px image: strides 4, 8, 16, 32 with 24, 40, 112, 320 channels
    taps = [numpy.random.randn(2, ch, 56 // 2 ** i, 56 // 2 ** i)
            for i, ch in enumerate(P.TAP_CHANNELS)]
    tv = [Variable(t) for t in taps]
    y = D.head(tv)
    assert y.shape == (2, 4 * 16)           # four 4 x 4 logit maps
    tt = [torch.tensor(t, requires_grad=True) for t in taps]
    ty = tD(tt)
    numpy.testing.assert_allclose(y.array, ty.detach().numpy(), atol=1e-8, rtol=0)
    gy = numpy.random.randn(*y.shape)
    y.grad = Variable(gy)
    y.backward()
    ty.backward(torch.tensor(gy))
    for a, b in zip(tv, tt):                # what reaches the feature network, then G
        numpy.testing.assert_allclose(a.grad.array, b.grad.numpy(), atol=1e-8)
    first = D.disc0.main[0]
    numpy.testing.assert_allclose(first.link.W.grad.array,
                                  tD.discs[0][0].weight_orig.grad.numpy(), atol=1e-8)


def test_projections_are_frozen_and_saved():
    D = P.Discriminator(tiny())
    names = [n for n, _ in D.namedparams()]
    assert not any(n.startswith("/projector") for n in names)
    assert sum(n.startswith("/projector") for n, _ in D.namedpersistents()) == 16


def test_ema_schedule_is_the_official_one():
    c = P.Config.for_data((3, 64, 64), batch=64)
    assert c.ema_kimg == 64 * 10 / 32 and c.interp224
    assert P.ema_beta(c, 0) == 0.0                          # G_ema starts as a copy of G
    assert P.ema_beta(c, 10_000) == pytest.approx(0.5 ** (64 / 500))   # ramp-up 0.05
    assert P.ema_beta(c, 10 ** 7) == pytest.approx(0.5 ** (64 / 20_000))
    assert not P.Config.for_data((3, 256, 256)).interp224


def test_config_refuses_what_the_networks_cannot_take():
    with pytest.raises(ValueError, match="power of 2"):
        P.Config.for_data((3, 48, 48))
    with pytest.raises(ValueError, match="RGB"):
        P.Config.for_data((1, 64, 64))
    with pytest.raises(ValueError, match="multiple"):
        P.Config.for_data((3, 64, 64), batch=6, batch_gpu=4)


# -- the command on 32 faces ----------------------------------------------------------------------

ANY_SIZE = ["--cfg", "fastgan_lite", "--batch", 4, "--batch-gpu", 2, "--cbase", 4, "--ndf", 8,
            "--tick", 0.004, "--snap", 1, "--seed", 3, "--workers", 0]
TINY = ["--resolution", 32, *ANY_SIZE]


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    src = shared("faces64")
    try:
        minigan.models.weights.efficientnet_lite0_file()
    except minigan.models.WeightFileError as e:
        pytest.skip(str(e))
    data = tmp_path_factory.mktemp("faces32")
    for name in sorted(os.listdir(src))[:32]:
        shutil.copy(os.path.join(src, name), data)
    return str(data)


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGAN_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def params(path, group):
    out = {}
    with h5py.File(path, "r") as f:
        f[f"models/{group}"].visititems(
            lambda n, d: out.__setitem__(n, d[()]) if isinstance(d, h5py.Dataset) else None)
    return out


def stored_iteration(path):
    with h5py.File(path, "r") as f:
        return int(f["iteration"][()])


def latest(folder):
    return os.path.basename(snapshots(folder, GLOB)[-1])


def test_snapshot_names_never_repeat_and_sort_by_name_and_key(tmp_path):
    names = []
    for nimg in (4, 8, 996, 1000, 1004, 3968, 4000):
        name = "network-snapshot-" + kimg_label(str(tmp_path), "network-snapshot-", ".h5",
                                                nimg) + ".h5"
        assert name not in names
        names.append(name)
        (tmp_path / name).write_bytes(b"")
    assert names[:4] == ["network-snapshot-000000.h5", "network-snapshot-000000_008.h5",
                         "network-snapshot-000000_996.h5", "network-snapshot-000001.h5"]
    assert names[-2:] == ["network-snapshot-000003.h5", "network-snapshot-000004.h5"]
    assert [os.path.basename(p) for p in snapshots(str(tmp_path), GLOB)] == names == \
        sorted(names)


def test_command_trains_writes_fid_and_resumes_exactly(faces):
    code, out = run("projected", "--data", faces, "--outdir", "a", "--kimg", 0.008,
                    "--metrics", "fid", "--fid-images", 8, *TINY)
    assert code == 0, out
    run_a = os.path.join("a", os.listdir("a")[0])
    assert os.path.basename(run_a) == "00000-fastgan_lite-" + os.path.basename(faces) + \
        "-gpus1-batch4"
    files = set(os.listdir(run_a))
    assert {"fakes000000.png", "fid.jsonl", "fid.png", "log.jsonl", "loss.png",
            "network-snapshot-000000.h5", "training_options.json"} <= files
    # a tick of 4 images: kimg 0 twice, the second named by its images past it, nothing lost
    assert {"fakes000000_008.png", "network-snapshot-000000_008.h5"} <= files
    assert [stored_iteration(p) for p in snapshots(run_a, GLOB)] == [1, 2]
    fid = [json.loads(l) for l in open(os.path.join(run_a, "fid.jsonl"))]
    assert [r["iteration"] for r in fid] == [1, 2]
    assert all(r["metric"] == "FID (EfficientNet-lite0)" and r["fid"] > 0 for r in fid)
    log = [json.loads(l) for l in open(os.path.join(run_a, "log.jsonl"))]
    assert log[-1]["iteration"] == 2
    assert all(numpy.isfinite(r["loss/gen"]) and numpy.isfinite(r["loss/dis"]) for r in log)
    snap = os.path.join(run_a, latest(run_a))
    g, ema = params(snap, "gen"), params(snap, "gen_ema")
    assert g.keys() == ema.keys()
    assert any(not numpy.array_equal(g[k], ema[k]) for k in g if k.endswith("/W"))

    # 1 step, then --resume to 2: the same parameters, bit for bit
    code, out = run("projected", "--data", faces, "--outdir", "b", "--kimg", 0.004,
                    "--metrics", "none", *TINY)
    assert code == 0, out
    run_b = os.path.join("b", os.listdir("b")[0])
    code, out = run("projected", "--data", faces, "--outdir", "b", "--kimg", 0.008,
                    "--metrics", "none", "--resume", run_b, *TINY)
    assert code == 0, out
    assert os.listdir("b") == [os.path.basename(run_b)]
    resumed = os.path.join(run_b, latest(run_b))
    for group in ("gen", "dis", "gen_ema"):
        a, b = params(snap, group), params(resumed, group)
        assert a.keys() == b.keys()
        for k in a:
            numpy.testing.assert_array_equal(a[k], b[k], err_msg=f"{group}/{k}")
    trained = minigan.load(resumed)         # generate needs no command line
    assert trained.name == "projected" and trained.config.ngf == 4
    x = P.generate(trained.models["gen_ema"], P.sample_z(trained.config, 2))
    assert x.shape == (2, 3, 32, 32)


@pytest.mark.parametrize("args, message", [
    (["--data", "missing", "--outdir", "o"], "--data missing: no such folder"),
    (["--batch", 6, "--batch-gpu", 4], "multiple of --batch-gpu"),
    (["--metrics", "kid50k"], "--metrics kid50k"),
    (["--resume", "nowhere"], "--resume: nowhere does not exist"),
    (["--resolution", 48], "power of 2"),
])
def test_bad_input_is_one_line(faces, args, message):
    base = {"--data": faces, "--outdir": "o"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    code, out = run("projected", *[a for kv in base.items() for a in kv], "--kimg", 0.004)
    assert code != 0
    assert message in error_line(out)
    assert not os.path.exists("o") or not os.listdir("o")


def test_resolution_defaults_to_the_first_image_of_data(faces, tmp_path):
    # the faces are 64 x 64; read from --data wherever the command runs (not only inside it)
    assert os.path.isabs(faces) and os.getcwd() != faces
    assert image_size(faces) == 64
    code, out = run("projected", "--data", os.path.relpath(faces), "--outdir", "r", "--kimg",
                    0.004, *ANY_SIZE, "--metrics", "none")
    assert code == 0, out
    snap = os.path.join("r", os.listdir("r")[0], latest(os.path.join("r", os.listdir("r")[0])))
    assert minigan.load(snap).config.size == 64


def test_lightweight_calculate_fid_every_writes_fid_jsonl(faces):
    code, out = run("lightweight", "--data", faces, "--name", "f", "--image-size", 32,
                    "--batch-size", 2, "--gradient-accumulate-every", 1, "--num-train-steps", 2,
                    "--fmap-max", 8, "--latent-dim", 8, "--evaluate-every", 2,
                    "--save-every", 2, "--calculate-fid-every", 1,
                    "--calculate-fid-num-images", 4, "--workers", 0, "--attn-res-layers", "[]")
    assert code == 0, out
    fid = [json.loads(l) for l in open(os.path.join("results", "f", "fid.jsonl"))]
    assert [r["iteration"] for r in fid] == [1, 2]
    assert all(r["metric"] == "FID (EfficientNet-lite0)" and r["n_fake"] == 4 for r in fid)
    assert os.path.exists(os.path.join("results", "f", "fid.png"))
    assert os.path.exists(os.path.join("results", "f", "1.jpg"))
