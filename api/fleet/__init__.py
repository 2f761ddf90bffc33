"""Swarm mode: the box as a fleet of nodes; Swarm does the work on the nodes (docs/fleet.md)."""
