"""Which packages and folders the wheel holds (everything else is in pyproject.toml).

The layout keeps ``deploy/local/`` and ``examples/`` at the top of the repository; the
wheel ships them inside the ``foldflow`` package (``foldflow/_files/local``,
``foldflow/_files/examples``), where :mod:`foldflow.resources` finds them once installed.
"""

from setuptools import find_namespace_packages, setup

#: The top-level packages of the repository.
PACKAGES = ("foldflow", "schemas", "producers", "processors", "workers", "projections",
            "gateway", "bench")
#: Folders of the checkout that ship inside the foldflow package: package → folder.
SHIPPED_FOLDERS = {
    "foldflow._files.local": "deploy/local",
    "foldflow._files.examples": "examples",
}

setup(
    packages=[
        # namespace: the data-only folders (schemas/avro, migrations/versions, …) too
        *find_namespace_packages(include=[name for top in PACKAGES for name in (top, f"{top}.*")],
                                 exclude=["*.__pycache__"]),
        *SHIPPED_FOLDERS,
    ],
    package_dir=SHIPPED_FOLDERS,
)
