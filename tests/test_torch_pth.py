"""The .pth reader: files written by torch in both layouts equal torch's own load; hostile pickles
are refused before anything in them runs; truncated and out-of-bounds files fail cleanly."""
import os
import pickle
import zipfile

import numpy
import pytest

from minigan.models import UnsafePickleError, WeightFileError, cached_state_dict, load_pth
from minigan.models import weights

FORMATS = {"zip": True, "legacy": False}
REFUSED_SYSTEM = r"refused to load the global (posix|os|nt)\.system"


def torch_module():
    return pytest.importorskip("torch", reason="PyTorch reference tests need: "
                                               "pip install torch==2.13.0")


def tensors(torch):
    """The kinds of tensors a state dict holds, views and shared storages included."""
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    conv = torch.randn(8, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    return {
        "transposed": base.t(),                          # strides (1, 6)
        "sliced": base[1:3, ::2],                        # offset 6, strides (6, 2)
        "shares_base": base,                             # the same storage as the two above
        "channels_last": conv.contiguous(memory_format=torch.channels_last),
        "half": torch.linspace(-2, 2, 7).half(),
        "double": torch.randn(3, 2, dtype=torch.float64),
        "long": torch.arange(-3, 5),
        "int": torch.arange(6, dtype=torch.int32).reshape(2, 3),
        "byte": torch.arange(250, 256, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "bfloat16": torch.tensor([1.5, -2.25, 3.0], dtype=torch.bfloat16),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
        "parameter": torch.nn.Parameter(torch.ones(2, 2)),
    }


def expected(torch, t):
    """torch's values as NumPy has them (bfloat16, which NumPy lacks, as float32)."""
    t = t.detach()
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


@pytest.mark.parametrize("fmt", FORMATS)
def test_tensors_equal_torch(tmp_path, fmt):
    torch = torch_module()
    sd = tensors(torch)
    path = tmp_path / "w.pth"
    torch.save(sd, path, _use_new_zipfile_serialization=FORMATS[fmt])
    assert zipfile.is_zipfile(path) == FORMATS[fmt]
    got = load_pth(path)
    assert list(got) == list(sd)
    for k, t in sd.items():
        e = expected(torch, t)
        assert got[k].shape == e.shape and got[k].dtype == e.dtype, k
        numpy.testing.assert_array_equal(got[k], e, err_msg=k)
        assert got[k].flags.c_contiguous and got[k].flags.writeable


@pytest.mark.parametrize("fmt", FORMATS)
def test_module_state_dict(tmp_path, fmt):
    """A real module's state dict (an OrderedDict with _metadata) in both layouts."""
    torch = torch_module()
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    path = tmp_path / "m.pth"
    torch.save(m.state_dict(), path, _use_new_zipfile_serialization=FORMATS[fmt])
    got = load_pth(path)
    for k, t in m.state_dict().items():
        numpy.testing.assert_array_equal(got[k], t.numpy())


class Hostile:
    """Unpickling this runs `touch MARKER`: what a malicious weight file would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _headers():
    """The three pickles that open a legacy-layout file, as torch writes them."""
    return b"".join(pickle.dumps(h, protocol=2)
                    for h in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))


def _legacy_bytes(obj):
    """A legacy-layout file whose payload pickle is obj, with no storages."""
    return _headers() + pickle.dumps(obj, protocol=2) + pickle.dumps([], protocol=2)


def test_hostile_legacy_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    path.write_bytes(_legacy_bytes({"weight": Hostile(marker)}))
    with pytest.raises(UnsafePickleError, match=REFUSED_SYSTEM):
        load_pth(path)
    assert not marker.exists()


def test_hostile_plain_pickle_is_refused(tmp_path):
    """A bare pickle (no torch headers) fails at its first global too."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(Hostile(marker)))
    with pytest.raises(UnsafePickleError, match=r"system"):
        load_pth(path)
    assert not marker.exists()


def test_hostile_zip_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": Hostile(marker)}, protocol=2))
        z.writestr("archive/version", "3\n")
    with pytest.raises(UnsafePickleError, match=REFUSED_SYSTEM):
        load_pth(path)
    assert not marker.exists()


def test_other_globals_are_refused(tmp_path):
    """Even harmless-looking globals outside the allow-list (and torch's own bytes loader)."""
    path = tmp_path / "w.pth"
    for module, name in (("builtins", "eval"), ("torch.storage", "_load_from_bytes"),
                         ("torch", "load")):
        blob = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")R."
        path.write_bytes(blob)
        with pytest.raises(UnsafePickleError, match=f"{module}.{name}"):
            load_pth(path)


def test_build_cannot_change_a_checked_tensor(tmp_path):
    """A BUILD opcode that would set a tensor's offset to -5 after its checks is refused."""
    blob = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n("
            b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000"
            b"X\x03\x00\x00\x00cpuK\x06NtQ"              # persistent id of storage '0'
            b"K\x00K\x06\x85K\x01\x85\x89tR"              # offset 0, size (6,), stride (1,)
            b"N}X\x06\x00\x00\x00offsetJ\xfb\xff\xff\xffs\x86b.")   # BUILD (None, {offset: -5})
    storages = pickle.dumps(["0"], protocol=2) + (6).to_bytes(8, "little") + \
        numpy.arange(6, dtype="<f4").tobytes()
    path = tmp_path / "w.pth"
    path.write_bytes(_headers() + blob + storages)
    with pytest.raises(WeightFileError, match="tried to set _TensorRef.offset"):
        load_pth(path)
    # without the BUILD the same bytes are a valid file
    path.write_bytes(_headers() + blob[:blob.index(b"N}X")] + b"." + storages)
    numpy.testing.assert_array_equal(load_pth(path), numpy.arange(6, dtype="f4"))


def test_out_of_bounds_view_is_refused(tmp_path):
    """A tensor whose size and stride would read past its storage never reaches as_strided."""
    torch = torch_module()
    path = tmp_path / "w.pth"
    torch.save({"w": torch.arange(6.0)}, path)
    with zipfile.ZipFile(path) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    pkl = next(n for n in entries if n.endswith("data.pkl"))
    # size (6,) -> (60,): the pickled tuple (6,) is BININT1 6 + TUPLE1
    entries[pkl] = entries[pkl].replace(b"K\x06\x85", b"K\x3c\x85", 1)
    with zipfile.ZipFile(path, "w") as z:
        for n, data in entries.items():
            z.writestr(n, data)
    with pytest.raises(WeightFileError, match="reads past its storage"):
        load_pth(path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_file(tmp_path, fmt):
    torch = torch_module()
    path = tmp_path / "w.pth"
    torch.save({"w": torch.randn(100)}, path, _use_new_zipfile_serialization=FORMATS[fmt])
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(WeightFileError):
        load_pth(path)


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(WeightFileError, match="cannot read"):
        load_pth(tmp_path / "absent.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a pickle at all")
    with pytest.raises(WeightFileError):
        load_pth(tmp_path / "junk.pth")


def test_hdf5_cache(tmp_path, monkeypatch):
    """Converted once into $MINIGAN_HOME; the second load reads the HDF5 file, not the .pth."""
    torch = torch_module()
    monkeypatch.setenv("MINIGAN_HOME", str(tmp_path / "home"))
    path = tmp_path / "w.pth"
    sd = {"a.weight": torch.randn(3, 2).t(), "a.n": torch.tensor(4)}
    torch.save(sd, path)
    first = cached_state_dict(str(path))
    cached = list((tmp_path / "home" / "weights").glob("w-*.h5"))
    assert len(cached) == 1
    monkeypatch.setattr(weights, "load_state_dict", lambda p: pytest.fail("read the .pth again"))
    second = cached_state_dict(str(path))
    assert list(second) == list(sd)
    for k, t in sd.items():
        numpy.testing.assert_array_equal(first[k], t.numpy())
        numpy.testing.assert_array_equal(second[k], t.numpy())
