"""Routing: deployments and routes, strategies, retries, circuit breakers and the attempt loop."""
