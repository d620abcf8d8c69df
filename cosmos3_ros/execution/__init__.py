"""Closed-loop execution of action chunks on an arm (ROS-free, the clock is passed in).

``streaming`` decides when to ask for the next chunk and turns each chunk into a trajectory a
``joint_trajectory_controller`` runs well; ``handover`` joins the running chunk to the new one; ``limits``,
``gripper`` and ``safety`` decide what may reach the robot. Times are node-clock seconds (float; sim time
under ``use_sim_time``).
"""
