"""cosmos3_ros: serve NVIDIA Cosmos3 action models (policy, forward and inverse dynamics) on a robot.

Layers, dependencies pointing downward only:

* ``ros``        rclpy node and launch-facing entry points (the only code that imports rclpy)
* ``tools``      command-line interface: run on files, bag labelling, tiny checkpoints, benchmark
* ``runtime``    observation buffers, the inference worker thread, chunk timing, safety filter
* ``processing`` profiles, image composition and canvas, prompts, action post-processing
* ``engine``     checkpoint loading, sequence layout, denoising loop, samplers, text K/V cache
"""

__version__ = "0.1.0"
