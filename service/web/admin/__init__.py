"""The operator page at /admin: server-rendered HTML behind an admin key's login session
(service/web/admin/pages.py has its routes)."""
