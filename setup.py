from setuptools import setup

setup(
    name="fastccfs",
    version="0.1.0",
    description="Fast Curriculum Coarse-to-Fine Selection (CCFS) for high-IPC dataset distillation",
    python_requires=">=3.11",
    # configs/ (the per-dataset YAML) installs as the package data fastccfs.configs, and kernels/ (the
    # numba kernels) as fastccfs.kernels: a top-level `kernels` could be an unrelated PyPI package.
    packages=["fastccfs", "fastccfs.loaders", "fastccfs.configs", "fastccfs.kernels"],
    package_dir={"fastccfs.configs": "configs", "fastccfs.kernels": "kernels"},
    package_data={"fastccfs": ["data/*.zip", "data/forgetting_demo.npy"], "fastccfs.configs": ["*.yaml"]},
    install_requires=[
        "torch>=2.4",
        "torchvision>=0.19",
        "numpy>=1.24",
        "numba>=0.59",
        "Pillow>=10",
        "PyYAML>=6",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "xxhash>=3",  # the stores' checksums (XXH3: ~15 GB/s, 10× SHA-256 here)
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-benchmark>=4"],
        # The FFCV and DALI loader backends. ffcv builds against OpenCV and libjpeg-turbo: first
        # `apt-get install -y libopencv-dev libturbojpeg0-dev pkg-config` (`make setup` does it).
        "loaders": ["ffcv==1.0.2", "nvidia-dali-cuda120"],
    },
    entry_points={"console_scripts": ["fastccfs=fastccfs.cli:main"]},
)
