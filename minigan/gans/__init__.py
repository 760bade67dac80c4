"""The GAN zoo: one chapter per GAN, the registry that names them, and loading a trained one.

    import minigan
    trained = minigan.load("result/dcgan/snapshot_iter_0020000.h5")
    x = trained.module.generate(trained.models["gen"], trained.module.sample_z(trained.config, 16))

A chapter provides Config (with for_data and from_dict), build(config) -> (models, optimizers),
Updater, generate, and the unconditional ones sample_z; a chapter trained by the zoo's command
(commands/zoo.py) also lists FLAGS, DATASETS and TRAINING, from which that command is built. A snapshot stores the chapter's name and its Config as a dict, so
`load` rebuilds the networks without the command line that trained them.
"""
import collections
import json

import h5py

from .. import backend
from ..serializers import SerializationError, load_hdf5
from ..training import TrainingError, mismatch_line, read_meta
from . import began, dcgan, gan, lightweight, pix2pix, projected, wgan_gp

# name -> chapter: a GAN joins the zoo with one line here (the CLI, generate and load find it)
REGISTRY = {"gan": gan, "dcgan": dcgan, "wgan-gp": wgan_gp, "began": began, "pix2pix": pix2pix,
            "lightweight": lightweight, "projected": projected}

# the layout of a snapshot's meta group; 1: minigan 0.1.0, options only (no Config)
FORMAT = 2

Trained = collections.namedtuple("Trained", "name module config models options")


def snapshot_meta(name, config, options):
    """The meta group of a snapshot: format, GAN name, its Config and the run's options."""
    return {"format": FORMAT, "gan": name, "config": json.dumps(config.to_dict()),
            "options": json.dumps(options)}


def chapter(name, path="the snapshot"):
    """The registered chapter `name`, or a TrainingError naming the known ones."""
    if name not in REGISTRY:
        raise TrainingError(f"{path} is a {name or 'unknown'} snapshot; minigan knows "
                            f"{', '.join(REGISTRY)}")
    return REGISTRY[name]


def config_of(path, meta=None):
    """(chapter name, Config) of a snapshot, from its stored Config (or, for format 1, its
    options)."""
    meta = read_meta(path) if meta is None else meta
    name = meta.get("gan")
    module = chapter(name, path)
    version = int(meta.get("format", 1))
    if version > FORMAT:
        raise TrainingError(f"{path} was written by a newer minigan (snapshot format {version}; "
                            f"this one reads up to {FORMAT}): upgrade minigan")
    try:
        if version == 1:
            return name, _config_v1(path, name, module, json.loads(meta.get("options", "{}")))
        return name, module.Config.from_dict(json.loads(meta["config"]))
    except (ValueError, KeyError, TypeError) as e:
        raise TrainingError(f"{path}: cannot rebuild its {name} Config ({e})") from None


def load(path, device=-1):
    """A trained GAN from a snapshot: Trained(name, module, config, models, options), its
    models (eval-ready, on `device`) rebuilt from the stored Config and loaded strictly."""
    meta = read_meta(path)
    name, config = config_of(path, meta)
    module = REGISTRY[name]
    models, _ = module.build(config)
    try:
        load_hdf5(path, models, prefix="/models")
    except SerializationError as e:
        raise TrainingError(mismatch_line(path, e, name)) from None
    device = backend.as_device(device)
    for net in models.values():
        net.to_device(device)
    return Trained(name, module, config, models, json.loads(meta.get("options", "{}")))


def _config_v1(path, name, module, opts):
    """The Config of a minigan 0.1.0 snapshot, which stored only the command line's options."""
    if name == "pix2pix":           # the channels follow from the weights (the data decided)
        with h5py.File(path, "r") as f:
            c_in = f["/models/gen/enc/c0/W"].shape[1]
            c_out = f["/models/gen/dec/c_out/W"].shape[0]
        size = opts["size"]
        keep = ("n_down", "ngf", "ndf", "discriminator", "output")
        return module.Config.for_data(((c_in, size, size), (c_out, size, size)),
                                      **{k: opts[k] for k in keep if k in opts})
    if "shape" not in opts:
        raise KeyError("it records no data shape")
    overrides = {k: opts[k] for k in module.FLAGS if opts.get(k) is not None}
    if opts.get("lr") is not None:
        overrides["alpha"] = opts["lr"]
    return module.Config.for_data(opts["shape"], **overrides)
