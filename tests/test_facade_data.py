"""Facade data: the pix2pix A|B and CMP formats, their clear errors, and the synthetic facades."""
import os

import numpy
import pytest
from PIL import Image

from helpers import SHARED
from minigan.datasets import (LABEL_COLORS, DatasetError, FacadeDataset, SyntheticFacadeDataset,
                              colors_to_classes, label_image, make_facade, open_facade)
from minigan.datasets.facade import natural_key

# the team's real datasets (tests only); MINIGAN_TEST_DATA points elsewhere
REAL = os.path.join(SHARED, "facades", "train")


@pytest.fixture
def real():
    if not os.path.isdir(REAL):
        pytest.skip(f"real facades {REAL} not present")
    return REAL


def write_cmp(folder, n=5, h=48, w=40, sub="base"):
    """A tiny CMP-style set: cmp_bNNNN.jpg photos and indexed PNG labels in vertical stripes."""
    folder = os.path.join(folder, sub)
    os.makedirs(folder, exist_ok=True)
    labels = []
    for i in range(1, n + 1):
        # stripes of unequal widths so that a flip or shift of one side alone would show
        edges = numpy.cumsum([0, 4, 6, 8, 10, 12])[:, None] * w // 40
        cls = (numpy.searchsorted(edges.ravel(), numpy.arange(w), side="right") + i) % 12 + 1
        label = numpy.broadcast_to(cls.astype(numpy.uint8), (h, w)).copy()
        label[: h // 4] = 1                                         # sky band: rows differ too
        im = Image.fromarray(label, "P")
        im.putpalette(numpy.concatenate([[0, 0, 0], LABEL_COLORS.ravel()]).tolist())
        im.save(os.path.join(folder, f"cmp_b{i:04d}.png"))
        Image.fromarray(LABEL_COLORS[label - 1]).save(os.path.join(folder, f"cmp_b{i:04d}.jpg"), quality=98)
        labels.append(label)
    return folder, labels


def write_ab(folder, n=3, h=40, name="{}.png", same=True):
    """Tiny A|B images; with `same` the photo half equals the label half, pixel for pixel."""
    os.makedirs(folder, exist_ok=True)
    rng = numpy.random.default_rng(0)
    for i in range(1, n + 1):
        a = rng.integers(0, 256, (h // 4, h // 4, 3), dtype=numpy.uint8).repeat(4, 0).repeat(4, 1)
        b = a if same else 255 - a
        Image.fromarray(numpy.concatenate([a, b], 1)).save(os.path.join(folder, name.format(i)))
    return folder


def to_uint8(a):
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    return ((a.transpose(1, 2, 0) + 1) * 127.5).round().astype(numpy.uint8)


def repaint(a):
    """Each pixel of a (3, H, W) image replaced by its nearest label colour, in [-1, 1]."""
    return LABEL_COLORS[colors_to_classes(to_uint8(a))].transpose(2, 0, 1) / 127.5 - 1


def palette_only(a):
    """Whether every pixel of a (3, H, W) image is exactly a label colour."""
    return {tuple(c) for c in to_uint8(a).reshape(-1, 3)} <= {tuple(c) for c in LABEL_COLORS}


def error(fn, *args, **kw):
    with pytest.raises(DatasetError) as e:
        fn(*args, **kw)
    assert "\n" not in str(e.value)
    return str(e.value)


# -- pix2pix A|B, real data ---------------------------------------------------------------------

def test_real_split_is_fixed_360_40(real):
    train, val = FacadeDataset(real, "train", size=64), FacadeDataset(real, "val", size=64)
    assert (len(train), len(val)) == (360, 40)
    assert os.path.basename(train.items[-1]) == "360.jpg"           # natural order, not 1, 10, 100
    assert [os.path.basename(p) for p in val.items] == [f"{i}.jpg" for i in range(361, 401)]
    assert train.layout == "ab" and train.labels == "color"


@pytest.mark.parametrize("direction", ["BtoA", "AtoB"])
def test_real_shapes_and_ranges(real, direction):
    for split in ("train", "val"):
        ds = FacadeDataset(real, split, size=64, direction=direction)
        assert (ds.in_channels, ds.out_channels) == (3, 3)
        x, y = ds.get_example(0, numpy.random.default_rng(0))
        for a in (x, y):
            assert a.shape == (3, 64, 64) and a.dtype == numpy.float32
            assert -1 <= a.min() and a.max() <= 1 and a.std() > 0.05
        photo = y if direction == "BtoA" else x
        label = x if direction == "BtoA" else y
        # the label side is close to palette colours; the photo is not
        assert numpy.abs(repaint(label) - label).mean() < 0.5 * numpy.abs(repaint(photo) - photo).mean()


def test_real_labels_are_the_palette(real):
    """Most label pixels lie within JPEG noise of a LABEL_COLORS entry (jet at k / 11: 10 to 23)."""
    for i in (1, 50, 200):
        b = numpy.asarray(Image.open(os.path.join(real, f"{i}.jpg")).convert("RGB"))[:, 256:]
        repainted = LABEL_COLORS[colors_to_classes(b)].astype(float)
        assert numpy.median(numpy.sqrt(((repainted - b) ** 2).sum(-1))) < 6


def test_real_onehot_from_colours(real):
    ds = FacadeDataset(real, "val", size=32, labels="onehot")
    x, y = ds[0]
    assert x.shape == (12, 32, 32) and numpy.all(x.sum(0) == 1) and set(numpy.unique(x)) <= {0, 1}
    assert ds.in_channels == 12


def test_real_determinism(real):
    ds = FacadeDataset(real, "train", size=64)
    a = ds.get_example(3, numpy.random.default_rng(7))
    b = ds.get_example(3, numpy.random.RandomState(7))              # either kind of generator
    c = ds.get_example(3, numpy.random.default_rng(7))
    assert all(numpy.array_equal(p, q) for p, q in zip(a, c))
    assert a[0].shape == b[0].shape
    assert all(numpy.array_equal(p, q) for p, q in zip(ds[3], ds[3]))
    crops = {ds.get_example(3, numpy.random.default_rng(s))[1].tobytes() for s in range(6)}
    assert len(crops) > 1


def test_natural_order():
    assert sorted(["10.jpg", "2.jpg", "1.jpg", "b1.jpg", "a10.jpg", "a9.jpg"], key=natural_key) == \
        ["1.jpg", "2.jpg", "10.jpg", "a9.jpg", "a10.jpg", "b1.jpg"]


def test_ab_crop_and_flip_are_shared(tmp_path):
    """A == B halves: after the random crop and flip, x and y must still be equal."""
    ds = FacadeDataset(write_ab(tmp_path / "ab", n=12, h=40), "train", size=32)
    xs = []
    for seed in range(10):
        x, y = ds.get_example(0, numpy.random.default_rng(seed))
        assert x.shape == (3, 32, 32) and numpy.array_equal(x, y)
        xs.append(x.tobytes())
    assert len(set(xs)) > 3                                           # crops and flips did vary


def test_ab_train_subfolder_and_val_resize(tmp_path):
    write_ab(tmp_path / "facades" / "train", n=10, h=40, same=False)
    ds = FacadeDataset(tmp_path / "facades", "val", size=16)
    assert len(ds) == 1
    x, y = ds[0]
    assert x.shape == y.shape == (3, 16, 16)
    assert numpy.allclose(x + y, 0, atol=0.05)                      # B = 255 - A, no crop


# -- CMP base set -----------------------------------------------------------------------------

def test_cmp_onehot_labels_and_split(tmp_path):
    _, labels = write_cmp(tmp_path, n=5)
    train, val = FacadeDataset(tmp_path, "train", size=16), FacadeDataset(tmp_path, "val", size=16)
    assert train.layout == "cmp" and (len(train), len(val)) == (4, 1)
    assert (train.in_channels, train.out_channels) == (12, 3)
    x, y = val[0]
    assert x.shape == (12, 16, 16) and y.shape == (3, 16, 16) and x.dtype == y.dtype == numpy.float32
    assert numpy.all(x.sum(0) == 1) and set(numpy.unique(x)) <= {0.0, 1.0}
    expect = numpy.asarray(Image.fromarray(labels[4]).resize((16, 16), Image.NEAREST)) - 1
    assert numpy.array_equal(x.argmax(0), expect)                   # nearest keeps classes exact
    assert -1 <= y.min() and y.max() <= 1


def test_cmp_crop_and_flip_are_shared(tmp_path):
    write_cmp(tmp_path, n=5, h=64, w=80)
    ds = FacadeDataset(tmp_path, "train", size=32)
    for seed in range(8):
        x, y = ds.get_example(seed % 4, numpy.random.default_rng(seed))
        photo_cls = colors_to_classes(to_uint8(y))
        assert (photo_cls == x.argmax(0)).mean() > 0.9              # a lone flip or shift breaks this


def test_cmp_colour_labels_and_atob(tmp_path):
    write_cmp(tmp_path, n=3)
    ds = FacadeDataset(tmp_path, "val", size=16, direction="AtoB")
    assert ds.labels == "color" and (ds.in_channels, ds.out_channels) == (3, 3)
    x, y = ds[0]
    assert palette_only(y)
    assert numpy.array_equal(label_image(FacadeDataset(tmp_path, "val", size=16)[0][0]), y)


# -- errors -----------------------------------------------------------------------------------

def test_missing_and_empty_folders(tmp_path):
    assert "does not exist" in error(FacadeDataset, tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    assert "no facade images" in error(FacadeDataset, tmp_path / "empty")
    assert open_facade(tmp_path / "nope") is None and open_facade(tmp_path / "empty") is None
    assert "does not exist" in error(open_facade, tmp_path / "nope", required=True)


def test_open_facade_finds_data(tmp_path):
    write_ab(tmp_path, n=4)
    ds = open_facade(tmp_path, "val", size=16)
    assert isinstance(ds, FacadeDataset) and len(ds) == 1
    assert "pix2pix A|B" in ds.describe()


def test_wrong_pair_shape_names_the_file(tmp_path):
    write_ab(tmp_path, n=3)
    Image.new("RGB", (30, 20)).save(tmp_path / "2.png")
    msg = error(FacadeDataset, tmp_path)
    assert "2.png" in msg and "30x20" in msg and "twice as wide" in msg


def test_corrupt_image_names_the_file(tmp_path):
    write_ab(tmp_path, n=3, name="{}.jpg")
    (tmp_path / "2.jpg").write_bytes(b"not a jpeg at all")
    assert "2.jpg" in error(FacadeDataset, tmp_path)


def test_truncated_image_fails_when_loaded(tmp_path):
    write_ab(tmp_path, n=3, h=64, name="{}.jpg")
    data = (tmp_path / "1.jpg").read_bytes()
    (tmp_path / "1.jpg").write_bytes(data[: len(data) // 2])        # header intact, pixels cut
    ds = FacadeDataset(tmp_path, "train", size=32)                   # the cheap check passes
    msg = error(ds.get_example, 0, numpy.random.default_rng(0))
    assert "1.jpg" in msg and "cannot decode" in msg


def test_cmp_photo_without_label(tmp_path):
    folder, _ = write_cmp(tmp_path, n=3)
    os.remove(os.path.join(folder, "cmp_b0002.png"))
    msg = error(FacadeDataset, tmp_path)
    assert "cmp_b0002.jpg" in msg and "no label image" in msg


def test_cmp_label_size_and_values(tmp_path):
    folder, _ = write_cmp(tmp_path, n=3)
    Image.new("P", (7, 7), 1).save(os.path.join(folder, "cmp_b0001.png"))
    assert "7x7" in error(FacadeDataset, tmp_path)
    Image.new("P", (40, 48), 0).save(os.path.join(folder, "cmp_b0001.png"))
    ds = FacadeDataset(tmp_path, "train", size=16)
    assert "expected 1..12" in error(ds.get_example, 0, numpy.random.default_rng(0))


def test_bad_options(tmp_path):
    write_ab(tmp_path, n=3)
    assert "direction" in error(FacadeDataset, tmp_path, direction="LtoR")
    assert "split" in error(FacadeDataset, tmp_path, split="test")
    assert "AtoB" in error(FacadeDataset, tmp_path, direction="AtoB", labels="onehot")
    write_ab(tmp_path / "one", n=1)
    assert "only one" in error(FacadeDataset, tmp_path / "one")


# -- synthetic facades ------------------------------------------------------------------------

def test_synthetic_determinism():
    a, b = SyntheticFacadeDataset(n=20, size=32), SyntheticFacadeDataset(n=20, size=32)
    for i in (0, 5):
        p, q = a.get_example(i, numpy.random.default_rng(1)), b.get_example(i, numpy.random.default_rng(1))
        assert all(numpy.array_equal(u, v) for u, v in zip(p, q))
        assert all(numpy.array_equal(u, v) for u, v in zip(a[i], b[i]))
    other = SyntheticFacadeDataset(n=20, size=32, seed=1)
    assert not numpy.array_equal(a[0][1], other[0][1])
    assert not numpy.array_equal(a[0][1], a[1][1])


def test_synthetic_has_all_twelve_classes():
    seen = set()
    for i in range(12):
        for size in (64, 128):
            seen |= set(numpy.unique(make_facade([0, i], size)[0]).tolist())
    assert seen == set(range(12))


@pytest.mark.parametrize("direction,labels,channels", [("BtoA", "onehot", (12, 3)),
                                                       ("BtoA", "color", (3, 3)),
                                                       ("AtoB", "color", (3, 3))])
def test_synthetic_shapes_ranges_and_labels(direction, labels, channels):
    for split, n in (("train", 18), ("val", 2)):
        ds = SyntheticFacadeDataset(n=20, size=64, split=split, direction=direction, labels=labels)
        assert len(ds) == n and (ds.in_channels, ds.out_channels) == channels
        x, y = ds.get_example(0, numpy.random.default_rng(0))
        assert x.shape == (channels[0], 64, 64) and y.shape == (channels[1], 64, 64)
        assert x.dtype == y.dtype == numpy.float32
        assert -1 <= x.min() and x.max() <= 1 and -1 <= y.min() and y.max() <= 1
        label, photo = (x, y) if direction == "BtoA" else (y, x)
        if labels == "onehot":
            assert numpy.all(label.sum(0) == 1) and set(numpy.unique(label)) <= {0.0, 1.0}
        else:
            assert palette_only(label)
        assert photo.std() > 0.1


def test_synthetic_crop_and_flip_are_shared():
    ds = SyntheticFacadeDataset(n=10, size=32, labels="onehot")
    classes, photo = make_facade([0, 0], ds.load_size)
    x, y = ds.get_example(0, numpy.random.default_rng(3))
    found = [(oy, ox, f) for f in (False, True) for oy in range(ds.load_size - 31)
             for ox in range(ds.load_size - 31)
             if numpy.array_equal((classes[:, ::-1] if f else classes)[oy:oy + 32, ox:ox + 32], x.argmax(0))]
    assert found
    oy, ox, f = found[0]
    crop = (photo[:, :, ::-1] if f else photo)[:, oy:oy + 32, ox:ox + 32]
    assert numpy.allclose(crop * 2 - 1, y)


def test_synthetic_examples_follow_their_random_generator():
    ds = SyntheticFacadeDataset(n=4, size=64)
    a = ds.get_example(1, numpy.random.default_rng(0))
    b = ds.get_example(1, numpy.random.default_rng(0))
    c = ds.get_example(1, numpy.random.default_rng(1))
    for u, v in zip(a, b):
        numpy.testing.assert_array_equal(u, v)
    assert any((u != w).any() for u, w in zip(a, c))      # the crop and flip are drawn
    assert a[0].shape[1:] == a[1].shape[1:] == (64, 64)
