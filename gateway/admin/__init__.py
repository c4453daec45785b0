"""The admin API: keys, teams, users, models, secrets, health, usage, reports, audit; each route guarded by a role."""
