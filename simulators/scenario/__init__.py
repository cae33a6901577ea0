"""Incident scenarios on top of normal life, with ground truth, and the runner that scores the hub on them."""
