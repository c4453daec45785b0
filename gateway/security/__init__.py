"""Admin security primitives: password hashing, JWTs (PyJWT), TOTP (pyotp), secret masking,
encrypted secrets, client-address checks. Each module is small and has no
state of its own; the admin API (``gateway.admin``) puts them together.
"""
