"""ROS-free node runtime: image decoding, observation buffers, the inference worker, outputs, safety, diagnostics.

Nothing here imports rclpy; the node logic (``node_core.PolicyNodeCore``) runs on rclpy messages in the node
and on ``rosbags`` messages in tests and offline tools.
"""
