"""The operator console: organisation scoping, dashboard, audit trail, exports and imports."""
