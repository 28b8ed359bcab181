"""The ROS programs: the node's process, the sample and bench cameras, the demo and the
ROS bench (each runs as ``python -m dsflash_ros.ros.programs.<name>``)."""
