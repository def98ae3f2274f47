"""Build the Cython hot paths in ext/ into rapidbyte_fast/_native/, and bundle the built
WASM plugins (connectors/dist/*.wasm) into the package as rapidbyte_fast/plugins/bundled/.

This is the one file that names Cython. Nothing here is optional: a kernel source that is
missing, a kernel that does not compile, or no plugin builds to bundle fails the build, so an
install (from a checkout, an sdist or a wheel) never silently degrades to the pure-Python
twins or ships without its plugins.
"""
import ast
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
PLUGIN_BUILDS = HERE / "connectors" / "dist"
# rapidbyte_fast/plugins/discovery.py looks for the installed copy here
BUNDLED_PLUGINS = Path("rapidbyte_fast", "plugins", "bundled")


def _fail(message: str) -> None:
    raise SystemExit(f"rapidbyte-fast build: {message}")


def kernel_stems() -> list[str]:
    """The stems of ext/*.pyx, after checking that every kernel _impl.py imports has one.

    _impl.STEMS is read from the source, not imported: the build environment has only the
    build requirements, not the package's dependencies.
    """
    tree = ast.parse((HERE / "rapidbyte_fast" / "_impl.py").read_text(encoding="utf-8"))
    wanted = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "STEMS" for t in node.targets)
    ]
    if len(wanted) != 1:
        _fail("cannot read the kernel list (STEMS) from rapidbyte_fast/_impl.py")
    found = sorted(p.stem for p in (HERE / "ext").glob("*.pyx"))
    missing = [stem for stem in wanted[0] if stem not in found]
    if missing:
        _fail(
            f"kernel sources missing: {', '.join(f'ext/{s}.pyx' for s in missing)} "
            "(an sdist must carry ext/*.pyx, *.pxd and *.pxi: see MANIFEST.in)"
        )
    return found


class BuildPyWithPlugins(build_py):
    """build_py that also copies connectors/dist/*.wasm into the package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install finds connectors/dist in the checkout itself
        builds = sorted(PLUGIN_BUILDS.glob("*.wasm"))
        if not builds:
            _fail(
                "no WASM plugin builds in connectors/dist/ to bundle "
                "(build them with `python connectors/build.py`)"
            )
        target = Path(self.build_lib) / BUNDLED_PLUGINS
        self.mkpath(str(target))
        for wasm in builds:
            self.copy_file(str(wasm), str(target / wasm.name))


extensions = [
    Extension(
        f"rapidbyte_fast._native.{stem}",
        [f"ext/{stem}.pyx"],
        include_dirs=["ext"],
        extra_compile_args=["-O3", "-fno-strict-aliasing"],
    )
    for stem in kernel_stems()
]

setup(
    cmdclass={"build_py": BuildPyWithPlugins},
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
