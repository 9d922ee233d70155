"""The packages: melanoma_lab and its sub-packages, and conf/ shipped inside the wheel as ``melanoma_lab.conf``.

A checkout (editable install or not) reads ./conf; an installed wheel reads the copy inside the package
(melanoma_lab.config.compose.CONF_DIR finds either). Everything else about the project is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["melanoma_lab", "melanoma_lab.*"]), "melanoma_lab.conf"],
    package_dir={"melanoma_lab.conf": "conf"},
    package_data={"melanoma_lab.conf": ["**/*.yaml"]},
)
