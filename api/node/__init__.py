"""The node CLI: what a fleet job runs on every Swarm node (`python -m api.node ...`)."""
