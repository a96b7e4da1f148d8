"""What every route passes through: the one way in (pipeline.py) and what a step is
(steps.py); the steps themselves: request timing and /metrics (telemetry.py), the database's
state (database_state.py), CORS and the private pages' access rule (api.py), bodies read
whole within their limits (bodies.py), rate limits (ratelimits.py); and the bodies declared as
types, from which /openapi.json is made (schema.py). Imports the leaves and store/, never a
feature: the features' own steps (the heartbeat routes' clock, the operator's access rule)
are put in the list by collector/app.py."""
