"""LiDAR sensor libraries (pure: no process, no broker): Velodyne VLP-16 / HDL-32E decoding
from live UDP packets or pcap captures, PCD/PLY directories, and a synthetic scanner.

Modules (import the one you need; this package imports nothing on its own, so importing
it stays cheap):

    frame        LidarFrame and the sources' typed errors
    pcap         classic pcap reader (mmap + numpy)
    calibration  VeloView XML calibration files and built-in tables
    clock        packet time stamps (sensor clock, host clock, anchored)
    velodyne     packet layout, vectorised decoder, rotation assembly
    sim          the synthetic scene and scan
    sources      PcapSource, UdpSource, PcdDirSource, SimSource, open_lidar_source
"""
