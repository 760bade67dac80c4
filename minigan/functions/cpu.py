"""The kind of CPU, for the thresholds that choose between an op's CPU forms.

Where a faster form wins depends on the machine: Winograd's 3 x 3 form, for one, wins from
16 x 16 images at batch 8 on the Intel Xeon with AVX-512 that the benchmarks ran on, where on
the AMD Zen 4 it lost below 32 x 32 (benchmarks/README.md). A threshold measured on one kind is
keyed by it; every other CPU keeps the "default" values (the AMD Zen 5 too: a table of its own,
from a per-layer sweep there, measured no faster on whole steps, and the Xeon's was slower).
MINIGAN_CPU_KIND overrides the detection (for tests and for comparing on one machine).
"""
import functools
import os

KINDS = ("default", "intel-avx512")


@functools.lru_cache(maxsize=None)
def _detected():
    """'intel-avx512' for a GenuineIntel CPU with AVX-512F (Linux's /proc/cpuinfo), else
    'default'."""
    try:
        with open("/proc/cpuinfo") as f:
            return kind_of(f.read(1 << 16))     # the first processor's lines are enough
    except OSError:
        return "default"


def kind_of(cpuinfo):
    """The kind that /proc/cpuinfo's text describes."""
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in cpuinfo.splitlines()
                                                 if ":" in line)}
    vendor, flags = fields.get("vendor_id", ""), fields.get("flags", "").split()
    return "intel-avx512" if vendor == "GenuineIntel" and "avx512f" in flags else "default"


def kind():
    """The CPU kind: $MINIGAN_CPU_KIND when set, else what /proc/cpuinfo says."""
    forced = os.environ.get("MINIGAN_CPU_KIND")
    if forced:
        if forced not in KINDS:
            raise ValueError(f"MINIGAN_CPU_KIND={forced!r}: expected one of {', '.join(KINDS)}")
        return forced
    return _detected()
