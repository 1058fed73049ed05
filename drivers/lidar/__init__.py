"""LiDAR sensor libraries (pure: no process, no broker): Velodyne (VLP-16, Puck, HDL-32E,
VLP-32C, HDL-64E, VLS-128) and Ouster decoding from live UDP packets or pcap captures,
PCD/PLY directories, and a synthetic scanner. docs/LIDAR.md is the overview.

Modules (import the one you need; this package imports nothing on its own, so importing
it stays cheap):

    frame        LidarFrame and the sources' typed errors
    pcap         classic pcap reader (mmap + numpy)
    calibration  VeloView XML / ROS YAML calibration files and built-in tables
    clock        packet time stamps (sensor clock, host clock, anchored)
    identify     which model sent a stream (product id, packet interval, firing pattern)
    loss         lost / out-of-order packets of a stream
    velodyne     packet layout, vectorised decoder, rotation assembly
    velodyne_ext VLP-32C, HDL-64E, VLS-128 / Alpha Prime through velodyne_decoder
    ouster       Ouster OS0/OS1/OS2/OSDome packets + metadata JSON
    sim          the synthetic scene and scan
    sources      PcapSource, UdpSource, PcdDirSource, SimSource, open_lidar_source
"""
