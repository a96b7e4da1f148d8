"""What people and other programs read: the dashboard, /api/v1 in the original front
ends' dialect (ui_v1.py) and the OpenAPI document. Imports anything below it, nothing
imports it but the application factory."""
