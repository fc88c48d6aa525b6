"""Which packages and folders the wheel holds (everything else is in pyproject.toml).

Everything installs under the one ``foldflow`` name: the repository keeps ``schemas/``,
``producers/``, ``processors/``, ``workers/``, ``projections/``, ``gateway/`` and ``bench/``
at its top (the layout), and the wheel holds them as ``foldflow.schemas``,
``foldflow.producers``, … (a checkout imports them the same way through the symlinks
``foldflow/<name> -> ../<name>``; the wheel gets real files, mapped here). Nothing else
goes into site-packages, so an unrelated PyPI package named ``schemas`` cannot replace ours.

The layout also keeps ``deploy/local/`` and ``examples/`` at the top of the repository; the
wheel ships them inside the ``foldflow`` package (``foldflow/_files/local``,
``foldflow/_files/examples``), where :mod:`foldflow.resources` finds them once installed.
"""

from setuptools import find_namespace_packages, setup

NAMESPACE = "foldflow"
#: The top-level folders of the repository that install as ``foldflow.<name>``.
SUBPACKAGES = ("schemas", "producers", "processors", "workers", "projections", "gateway",
               "bench")
#: Folders of the checkout that ship inside the foldflow package: package → folder.
SHIPPED_FOLDERS = {
    "foldflow._files.local": "deploy/local",
    "foldflow._files.examples": "examples",
}


def _packages(top: str) -> list[str]:
    # namespace: the data-only folders (schemas/avro, migrations/versions, …) too
    return find_namespace_packages(include=[top, f"{top}.*"], exclude=["*.__pycache__"])


def _all_packages() -> list[str]:
    """foldflow's own packages (not through its symlinks), then each folder's under foldflow."""
    own = [name for name in _packages(NAMESPACE)
           if name.split(".")[1:2] not in [[sub] for sub in SUBPACKAGES]]
    return [*own, *(f"{NAMESPACE}.{name}" for sub in SUBPACKAGES for name in _packages(sub))]


setup(
    packages=[*_all_packages(), *SHIPPED_FOLDERS],
    package_dir={**{f"{NAMESPACE}.{sub}": sub for sub in SUBPACKAGES}, **SHIPPED_FOLDERS},
)
