"""Build script: a plain setuptools package that is also an ament_python ROS 2 package."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "cosmos3_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Serve NVIDIA Cosmos3 action models (policy, forward / inverse dynamics) in ROS 2 and on files",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["py.typed"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.json") + glob("config/*.xml")),
        (f"share/{PACKAGE}/msg", glob("msg/*.msg")),
    ],
    install_requires=[
        "numpy>=1.24",
        # torch is deliberately unpinned: any CUDA or CPU build >= 2.4 works, and an installed one is kept.
        "torch>=2.4",
        "diffusers==0.42.1",
        "transformers>=4.57,<6",
        "tokenizers>=0.21",
        "safetensors>=0.8.0",
        "pillow>=10",
        "imageio>=2.34",
        "imageio-ffmpeg>=0.5",
        "rosbags>=0.10",
        "pyyaml>=6",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-timeout>=2.3", "ruff>=0.6", "accelerate>=1.0", "catkin_pkg>=1.0"],
        "plots": ["matplotlib>=3.8"],
        # dataset-infer: LeRobot parquet + video (PyAV wheels bundle libdav1d, so DROID's AV1 videos decode).
        "labelling": ["pyarrow>=15", "av>=12"],
        # dataset-infer --ray: episodes on Ray actors (a cluster, or a local instance).
        "ray": ["ray>=2.9"],
    },
    entry_points={
        "console_scripts": [
            "cosmos3-ros = cosmos3_ros.tools.cli:main",
            "policy_node = cosmos3_ros.ros.policy_node:main",
            "sim_fr3_node = cosmos3_ros.ros.sim_fr3_node:main",
        ],
    },
    zip_safe=False,
)
