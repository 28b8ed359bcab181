"""pip-installable dsflash_ros library (model, data, training, evaluation, runtime, CLI).

The ROS messages are built separately (scripts/setup.sh or colcon); see README.md.
"""

from pathlib import Path

from setuptools import find_packages, setup


def requirements(name: str) -> list[str]:
    lines = Path(__file__).with_name("requirements").joinpath(name).read_text().splitlines()
    return [ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip()]


setup(
    name="dsflash_ros",
    version="0.1.0",
    description="Real-time panoptic scene graphs (DSFlash) for ROS 2",
    long_description=Path(__file__).with_name("README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["dsflash_ros", "dsflash_ros.*"]),
    package_data={"dsflash_ros": ["model/presets/*.yaml"]},
    install_requires=requirements("base.txt"),
    extras_require={"dev": requirements("dev.txt")},
    entry_points={"console_scripts": ["dsflash = dsflash_ros.cli:main"]},
)
