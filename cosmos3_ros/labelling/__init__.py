"""Labelling recorded robot data with action chunks: rosbag2 / ROS 1 bags and LeRobot datasets.

Sources (``bag_source``, ``lerobot_source``), window cutting by zero-order hold at the model fps (``windows``),
outputs with a journal for ``--resume`` (``outputs``), evaluation against recorded joints and its plots
(``evaluation``), and the runs themselves (``bag_labelling``, ``dataset_labelling``) with their workers
(``workers``: one process per device, or Ray actors). Depends on ``runtime``, ``processing`` and ``engine`` only.
"""
