"""What every route passes through: JSON errors and body parsing (api.py), bodies read
whole within their limits (bodies.py), the database's state (database_state.py), rate limits
(ratelimits.py), request timing and /metrics (telemetry.py). Imports the leaves and store/,
never a feature."""
