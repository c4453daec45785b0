"""The client request path: ASGI plumbing, the client API handlers, the per-request service and traffic control."""
