"""Deployments: the projects table and its status flow (deployments.py) and the client
of the original deployer service (deployer.py). Imports the leaves, store/, web/ and
identity/."""
