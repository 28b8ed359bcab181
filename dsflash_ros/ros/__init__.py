"""Everything that touches ROS 2 (rclpy, message types) lives in this subpackage."""
