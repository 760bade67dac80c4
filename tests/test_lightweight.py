"""Lightweight GAN: gradient checks of the FastGAN blocks and the whole D (second order, the
penalty's), a PyTorch twin of G and D equal to 1e-10 in float64, and the command end to end on
ramen (outputs, continue, exact resume, --new, --generate, --load-from, bad input) and on a tiny
RGBA folder (--transparent: PNG grids and images with alpha, exact resume, FID)."""
import json
import os

import h5py
import numpy
import pytest
from PIL import Image

from helpers import check_op, error_line, randn, run, shared
from lightweight_twin import torch_twin
import minigan
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


def test_noise_injection_with_one_scalar_weight():
    """ProjectedGAN's form: one w for all channels, its gradient summed over them."""
    noise = randn(2, 1, 3, 3, seed=1)
    link = B.NoiseInjection(1, dtype=F64)
    link.weight.array[...] = 0.7
    check_op(lambda x: link(x, noise), [randn(2, 4, 3, 3)], lambda x: x + 0.7 * noise,
             params=[link.weight])


@pytest.mark.parametrize("dtype", [numpy.float32, F64])
@pytest.mark.parametrize("jit", ["1", "0"])
def test_scaled_noise_forward_bits_and_errors(dtype, jit, monkeypatch):
    """x + w noise: the compiled pass and the NumPy expression give the same bits (the product
    rounded before the sum); a wrong w or noise shape is one clear error."""
    monkeypatch.setenv("MINIGAN_JIT", jit)
    monkeypatch.setattr("minigan.functions.im2col._PARALLEL_BYTES", 0)
    monkeypatch.setattr("minigan.functions.im2col._CHUNK_BYTES", 40)
    x, w = randn(3, 5, 4, 6).astype(dtype), randn(5, seed=1).astype(dtype)
    noise = randn(3, 1, 4, 6, seed=2).astype(dtype)
    y = minigan.functions.scaled_noise(x, w, noise).array
    assert y.dtype == dtype
    numpy.testing.assert_array_equal(y, x + w.reshape(1, 5, 1, 1) * noise)
    with pytest.raises(ValueError, match="must be"):
        minigan.functions.scaled_noise(x, w[:4], noise)
    with pytest.raises(ValueError, match="must be"):
        minigan.functions.scaled_noise(x, w, noise[:, :, :3])


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


def dual_reference(a, b):
    """Each row [a_i, b_1 .. b_M] through a softmax cross-entropy for class 0, written out."""
    def half(t1, t2):
        rows = numpy.concatenate([t1[:, None], numpy.tile(t2, (len(t1), 1))], axis=1)
        top = rows.max(axis=1)
        return numpy.mean(top + numpy.log(numpy.exp(rows - top[:, None]).sum(axis=1)) - t1)
    a, b = a.ravel(), b.ravel()
    return half(a, b) + half(-b, -a)


def test_dual_contrastive_loss_against_its_definition_and_gradients():
    a, b = randn(4, 1, 1, 1), randn(3, 1, 1, 1, seed=1)
    check_op(lw.loss_dual_contrastive, [a, b], dual_reference)
    # told apart: real logits far above the fake ones cost D little, the reverse a lot
    high, low = numpy.full((4, 1, 1, 1), 5.0), numpy.full((4, 1, 1, 1), -5.0)
    assert float(lw.loss_dual_contrastive(high, low).array) < 0.01
    assert float(lw.loss_dual_contrastive(low, high).array) > 10


def test_config_takes_the_dual_contrastive_loss_with_one_logit_per_image():
    with pytest.raises(ValueError, match="disc_output_size 1"):
        tiny(dual_contrast_loss=True)
    c = tiny(dual_contrast_loss=True, disc_output_size=1, gradient_accumulate_every=3)
    assert c.minibatches() == 6                # the G step reads real batches too


def test_antialiased_discriminator_grad_first_and_second_order():
    numpy.random.seed(0)
    D = lw.Discriminator(tiny(antialias=True, disc_output_size=1), dtype=F64)
    fn = lambda x: D(x)[:2]
    x = [randn(2, 1, 32, 32)]
    check_backward(fn, x, atol=1e-4, rtol=1e-3)
    # eps 1e-5: at 1e-3 the differences of the gradient step across a leaky ReLU's kink
    check_double_backward(fn, x, eps=1e-5, atol=1e-3, rtol=1e-2)


def test_config_refuses_sizes_that_are_not_powers_of_2():
    with pytest.raises(ValueError, match="power of 2"):
        lw.Config.for_data((3, 48, 48))
    assert lw.Config.for_data((3, 256, 256)).sle == ((8, 128), (16, 256))
    assert lw.Config.for_data((3, 1024, 1024)).sle[-1] == (64, 1024)
    c = lw.Config.for_data((3, 64, 64))
    assert lw.Config.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_config_takes_lucidrains_aug_types():
    assert lw.Config.for_data((4, 32, 32), aug_types="offset,cutout,offset_v").channels == 4
    with pytest.raises(ValueError, match="lightweight: unknown aug type.s. flip; choose from"):
        lw.Config.for_data((3, 32, 32), aug_types="offset,flip")


def test_augment_applies_offsets_after_the_flip_with_aug_prob():
    c = tiny(aug_prob=1.0, aug_types="offset")
    x = numpy.random.RandomState(0).standard_normal((3, 1, 32, 32))
    numpy.random.seed(4)
    got = lw.augment(c, minigan.Variable(x)).array
    numpy.random.seed(4)
    numpy.random.uniform()                                      # the batch's aug_prob draw
    flip = numpy.random.uniform() >= 0.5
    shifts = minigan.augment.sample_offsets(x.shape, "offset")
    want = x[..., ::-1] if flip else x
    want = numpy.stack([numpy.roll(im, tuple(s), axis=(1, 2)) for im, s in zip(want, shifts)])
    numpy.testing.assert_array_equal(got, want)
    assert lw.augment(tiny(aug_prob=0.0, aug_types="offset"), x) is x


def test_channel_table_at_256():
    c = lw.Config.for_data((3, 256, 256))
    assert [lw.g_width(c, r) for r in (4, 8, 16, 32, 64, 128, 256)] == \
        [256, 512, 512, 256, 128, 64, 32]


# -- the PyTorch twin (tests/lightweight_twin.py) -------------------------------------------------

@pytest.mark.parametrize("options", [{}, {"antialias": True, "disc_output_size": 1},
                                     {"attn_res_layers": (16,)}])
def test_pytorch_twin_of_g_and_d_in_float64(options):
    c = lw.Config.for_data((3, 64, 64), fmap_max=16, n_z=8, **options)
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

PLAIN = ["--image-size", 32, "--batch-size", 4, "--gradient-accumulate-every", 2,
         "--fmap-max", 8, "--latent-dim", 8, "--num-image-tiles", 2, "--aug-prob", 0.5,
         "--workers", 0, "--log-every", 5]
TINY = PLAIN + ["--attn-res-layers", "[]"]      # attention (lucidrains' default) costs seconds


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


def resumed_equals_straight(common, steps):
    """Train `steps` in one run ('straight') and in two halves ('split'): the same bits in
    checkpoint 2 (the last); returns its parameters."""
    assert run("lightweight", "--name", "straight", *common, "--num-train-steps", steps)[0] == 0
    assert run("lightweight", "--name", "split", *common, "--num-train-steps", steps // 2)[0] == 0
    code, out = run("lightweight", "--name", "split", *common, "--num-train-steps", steps)
    assert code == 0 and "continuing from" in out, out
    a, b = params("models/straight/model_2.h5"), params("models/split/model_2.h5")
    assert a.keys() == b.keys() and all(numpy.array_equal(a[k], b[k]) for k in a)
    return a


def test_resume_is_exact_and_new_moves_aside(ramen):
    common = ["--data", ramen, *TINY, "--save-every", 3, "--evaluate-every", 3]
    resumed_equals_straight(common, 6)
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


def test_show_progress_renders_the_same_latents_through_every_checkpoint(ramen):
    """lucidrains' --show-progress: results/NAME-progress/{n}.jpg, {n}-ema.jpg per checkpoint,
    one row of 4; the same latents each time (a second call rewrites the same pictures)."""
    code, out = run("lightweight", "--name", "p", "--show-progress")
    assert code != 0 and "no model_*.h5" in error_line(out)
    assert run("lightweight", "--data", ramen, "--name", "p", *TINY, "--num-train-steps", 4,
               "--save-every", 2, "--evaluate-every", 2)[0] == 0
    code, out = run("lightweight", "--name", "p", "--show-progress")
    assert code == 0 and "progress images of 2 checkpoints" in out, out
    files = sorted(os.listdir("results/p-progress"))
    assert files == ["1-ema.jpg", "1.jpg", "2-ema.jpg", "2.jpg"]
    pics = {f: numpy.asarray(Image.open(f"results/p-progress/{f}")) for f in files}
    size = pics["1.jpg"].shape[0]
    assert pics["1.jpg"].shape[1] > 3 * size                      # one row of four images
    assert not numpy.array_equal(pics["1.jpg"], pics["2.jpg"])    # G changed between them
    assert run("lightweight", "--name", "p", "--show-progress")[0] == 0
    again = numpy.asarray(Image.open("results/p-progress/2.jpg"))
    assert numpy.abs(again.astype(int) - pics["2.jpg"]).max() <= 1   # same latents, same picture


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


def test_attention_antialias_and_dual_contrast_train_and_resume_exactly(ramen):
    # attention at 32 (the default) costs seconds a step here: batch 2, the penalty at step 0
    common = ["--data", ramen, *PLAIN, "--batch-size", 2, "--gradient-accumulate-every", 1,
              "--save-every", 1, "--evaluate-every", 1, "--antialias", "--dual-contrast-loss",
              "--disc-output-size", 1]
    a = resumed_equals_straight(common, 2)
    config = json.load(open("models/split/config.json"))["config"]
    assert config["antialias"] and config["dual_contrast_loss"], config
    assert config["attn_res_layers"] == [32] and any(k.startswith("dis/attn32/") for k in a)
    assert all(numpy.isfinite(v) for r in log("split") for v in r.values())
    code, out = run("lightweight", "--data", ramen, "--name", "five", *TINY,
                    "--dual-contrast-loss")
    assert code != 0 and "--disc-output-size 1" in error_line(out)
    code, out = run("lightweight", "--data", ramen, "--name", "five", *PLAIN,
                    "--attn-res-layers", "[32,x]")
    assert code != 0 and "a list of widths" in error_line(out)
    code, out = run("lightweight", "--data", ramen, "--name", "five", *PLAIN,
                    "--attn-res-layers", "[24]")
    assert code != 0 and "powers of 2" in error_line(out)
    assert not os.path.exists("models/five")


# -- --transparent on a tiny RGBA folder ----------------------------------------------------------

RGBA_RUN = ["--transparent", "--image-size", 32, "--batch-size", 2,
            "--gradient-accumulate-every", 1, "--fmap-max", 8, "--latent-dim", 8,
            "--num-image-tiles", 2, "--aug-prob", 1, "--workers", 0, "--save-every", 1,
            "--evaluate-every", 1, "--aug-types", "cutout,translation,offset,color,offset_h",
            "--attn-res-layers", "[]"]


@pytest.fixture
def rgba(tmp_path, monkeypatch):
    """tmp_path/rgba: six 40 x 40 RGBA PNGs with random alpha and one opaque RGB JPEG."""
    rng = numpy.random.default_rng(0)
    os.makedirs(tmp_path / "rgba")
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (40, 40, 4), dtype=numpy.uint8), "RGBA").save(
            tmp_path / "rgba" / f"{i}.png")
    Image.fromarray(rng.integers(0, 256, (36, 36, 3), dtype=numpy.uint8)).save(
        tmp_path / "rgba" / "opaque.jpg")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MINIGAN_HOME", str(tmp_path / "home"))
    return "rgba"


def test_transparent_trains_writes_rgba_pngs_and_resumes_exactly(rgba):
    code, out = run("lightweight", "--data", rgba, "--name", "straight", *RGBA_RUN,
                    "--num-train-steps", 2)
    assert code == 0 and "as 4x32x32" in out, out
    files = set(os.listdir("results/straight"))
    assert {"1.png", "1-ema.png", "2.png", "2-ema.png"} <= files
    assert not [f for f in files if f.endswith(".jpg")]
    for f in ("1.png", "2-ema.png"):
        with Image.open(f"results/straight/{f}") as im:
            assert im.mode == "RGBA" and im.size == (66, 66)      # 2 x 2 tiles, 2 px between
            assert numpy.asarray(im)[..., 3].min() < 255          # G's alpha, not all opaque
    p = params("models/straight/model_2.h5")
    assert p["gen/out/W"].shape[0] == 4 and p["dis/stem/W"].shape[1] == 4
    assert json.load(open("models/straight/config.json"))["config"]["channels"] == 4
    # 1 + 1 steps equal 2, with every augmentation (offsets included) drawn each step
    assert run("lightweight", "--data", rgba, "--name", "split", *RGBA_RUN,
               "--num-train-steps", 1)[0] == 0
    code, out = run("lightweight", "--data", rgba, "--name", "split", *RGBA_RUN,
                    "--num-train-steps", 2)
    assert code == 0 and "continuing from" in out, out
    q = params("models/split/model_2.h5")
    assert p.keys() == q.keys() and all(numpy.array_equal(p[k], q[k]) for k in p)

    code, out = run("lightweight", "--name", "straight", "--generate", "--num-image-tiles", 2)
    assert code == 0, out
    made = os.listdir("results/straight-generated-2")
    assert len(made) == 4 and all(f.endswith(".png") for f in made)
    for f in made:
        with Image.open(os.path.join("results/straight-generated-2", f)) as im:
            assert im.mode == "RGBA" and im.size == (32, 32)
    code, out = run("lightweight", "--name", "straight", "--generate-interpolation",
                    "--interpolation-num-steps", 2, "--num-image-tiles", 2, "--save-frames")
    assert code == 0, out
    gif, = [f for f in os.listdir("results/straight") if f.endswith(".gif")]
    frames = os.listdir(os.path.join("results/straight", gif[:-4]))
    assert sorted(frames) == ["0.png", "1.png"]
    with Image.open(os.path.join("results/straight", gif[:-4], "0.png")) as im:
        assert im.mode == "RGB"                                 # composited onto white, as his


def test_transparent_bad_inputs_give_one_line(rgba):
    code, out = run("lightweight", "--data", rgba, "--name", "e", "--transparent", "--greyscale")
    assert code != 0 and "--transparent and --greyscale" in error_line(out)
    code, out = run("lightweight", "--data", rgba, "--name", "e", "--aug-types", "offset,zoom")
    assert code != 0 and "--aug-types: unknown aug type(s) zoom; choose from" in error_line(out)
    assert not os.path.exists("models/e") and not os.path.exists("results/e")


def test_transparent_fid_sees_the_samples_on_white(rgba):
    try:
        minigan.models.weights.efficientnet_lite0_file()
    except minigan.models.WeightFileError as e:
        pytest.skip(str(e))
    code, out = run("lightweight", "--data", rgba, "--name", "f", *RGBA_RUN,
                    "--num-train-steps", 1, "--calculate-fid-every", 1,
                    "--calculate-fid-num-images", 4)
    assert code == 0, out
    fid, = [json.loads(l) for l in open("results/f/fid.jsonl")]
    assert fid["n_fake"] == 4 and fid["n_real"] == 7 and numpy.isfinite(fid["fid"])
