"""Installing a worker: the setup script served per wallet (setup.py), the agent wheel
built from this code (wheel.py) and the files it ships (assets.py). Imports the leaves,
web/, identity/ and uptime/ (enrollment tokens)."""
