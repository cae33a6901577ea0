"""The OpenCV camera agent: motion, people, zones, lines, crowds and tamper, published as wire events.

Importing this package is cheap (no OpenCV): the config tree imports edge_agents.camera.config.
"""
