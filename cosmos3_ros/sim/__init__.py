"""A simulated FR3 for closed-loop tests and measurements (ROS-free core; the ROS node is
``cosmos3_ros.ros.sim_fr3_node``), and a scripted stand-in policy.

It lives beside ``execution/`` rather than inside it: the execution layer runs on a real robot and must not
carry simulator code; the simulator depends on ``execution`` only for shared pieces (trajectory sampling, FR3
limits), never the other way round.
"""
