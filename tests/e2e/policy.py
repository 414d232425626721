"""The per-route policy the rules and forward-auth tests run under: /public/* open, /admin/*
for the admins group, /api/* for any signed-in user with API answers (401, never 302)."""

AUTHZ_RULES = """
[[authz.rules]]
paths = ["/public/*"]
action = "public"

[[authz.rules]]
paths = ["/admin/*"]
action = "require"
groups = ["admins"]

[[authz.rules]]
paths = ["/api/*"]
action = "authenticated"
api = true
"""
