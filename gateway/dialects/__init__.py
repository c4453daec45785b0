"""Ingress dialects: client request formats parsed into the canonical request and answers rendered back."""
