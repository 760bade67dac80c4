"""The 2-D ring of Gaussians (Unrolled GAN, VEEGAN) and the mode-coverage score used with it."""
import numpy


def ring_centers(n_modes=8, radius=2.0):
    """(n_modes, 2) float32 centres evenly spaced on a circle, the first on the positive x axis."""
    angles = 2 * numpy.pi * numpy.arange(n_modes) / n_modes
    return (radius * numpy.stack([numpy.cos(angles), numpy.sin(angles)], 1)).astype(numpy.float32)


def sample_ring(n, rng, n_modes=8, radius=2.0, std=0.02):
    """n float32 points of the equal-weight mixture, drawn with the numpy Generator rng."""
    modes = rng.integers(0, n_modes, n)
    noise = rng.standard_normal((n, 2)) * std
    return (ring_centers(n_modes, radius)[modes] + noise).astype(numpy.float32)


class RingDataset:
    """n points of the ring mixture, fixed by seed; each example is ((2,) float32,)."""

    channels = 2

    def __init__(self, n=100_000, n_modes=8, radius=2.0, std=0.02, seed=0):
        self.n_modes, self.radius, self.std = n_modes, radius, std
        self.centers = ring_centers(n_modes, radius)
        self.points = sample_ring(n, numpy.random.default_rng(seed), n_modes, radius, std)
        self.shape = (2,)

    def __len__(self):
        return len(self.points)

    def describe(self):
        """One line for the log: what is being read."""
        return (f"toy ring: {len(self)} points from {self.n_modes} Gaussians (radius {self.radius}, "
                f"std {self.std})")

    def get_example(self, i, rng=None):
        return (self.points[i],)

    def __getitem__(self, i):
        return self.get_example(i)


def mode_coverage(samples, centers=None, std=0.02, n_sigma=3.0, min_fraction=0.01):
    """(modes covered, fraction of high-quality samples) of 2-D samples against the ring's modes.

    A sample is high quality when it lies within n_sigma * std of its nearest centre (the
    Unrolled GAN / VEEGAN criterion); a mode is covered when at least min_fraction of all samples
    are high-quality samples assigned to it, so a few stray points do not count as a mode.
    """
    samples = numpy.asarray(samples, dtype=numpy.float64).reshape(-1, 2)
    centers = ring_centers() if centers is None else numpy.asarray(centers, dtype=numpy.float64)
    dist = numpy.linalg.norm(samples[:, None, :] - centers[None, :, :], axis=2)  # (N, modes)
    nearest = dist.argmin(1)
    good = dist[numpy.arange(len(samples)), nearest] <= n_sigma * std
    counts = numpy.bincount(nearest[good], minlength=len(centers))
    covered = int((counts >= max(1, min_fraction * len(samples))).sum())
    return covered, float(good.mean()) if len(samples) else 0.0
