"""Uptime: heartbeats and pings in, windows and records out, credits, enrollment of agent
keys, the sweeper, the worker read routes and the fleet's gauges. Imports the leaves,
store/, web/, identity/ and projects/ (the sweeper polls deployments)."""
