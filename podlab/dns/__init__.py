"""Cluster DNS: a zone from the control plane, autopath, and the node-local cache."""
