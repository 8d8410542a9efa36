"""Builds the optional fused CPU kernels (a plain C++ library loaded through ctypes).

``gnpool/kernels/csrc`` is compiled once per x86-64 instruction-set level so that the loops
vectorise for the processor at hand (gnpool/kernels/cpu.py picks the best one at
import). Every build is optional: where one does not compile (another architecture, no
OpenMP), gnpool installs without it and falls back to the next or to its torch backends.
"""

import platform

from setuptools import Extension, setup

FLAGS = ["-O3", "-std=c++17", "-fopenmp", "-fno-math-errno", "-fno-trapping-math"]
LEVELS = {"generic": []}
if platform.machine().lower() in ("x86_64", "amd64"):
    LEVELS = {"avx512": ["-march=x86-64-v4"], "avx2": ["-march=x86-64-v3"], "generic": []}

setup(
    ext_modules=[
        Extension(
            f"gnpool.kernels._cpu_{level}",
            sources=[f"gnpool/kernels/csrc/{name}.cpp" for name in ("gnp", "attsets", "csr")],
            depends=["gnpool/kernels/csrc/common.h"],
            language="c++",
            extra_compile_args=FLAGS + march,
            extra_link_args=["-fopenmp"],
            optional=True,
        )
        for level, march in LEVELS.items()
    ]
)
