"""rclpy adapters (the only package that imports rclpy): the ``policy_node`` executable."""
