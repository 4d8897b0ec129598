"""Build script for the optional C fast paths; everything else is in pyproject.toml.

``optional=True``: without a C compiler the install still succeeds and the
package runs in pure Python (``orderbook.implementation()`` says which).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "orderbook._speedups",
            ["orderbook/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
