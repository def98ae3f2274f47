"""Build the Cython hot paths in ext/ into rapidbyte_fast/_native/.

This is the one file that names Cython. A compile failure fails the install: the package
never silently degrades to its pure-Python twins.
"""
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent
STEMS = sorted(p.stem for p in (HERE / "ext").glob("*.pyx"))

extensions = [
    Extension(
        f"rapidbyte_fast._native.{stem}",
        [f"ext/{stem}.pyx"],
        include_dirs=["ext"],
        extra_compile_args=["-O3", "-fno-strict-aliasing"],
    )
    for stem in STEMS
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["ext"],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
)
