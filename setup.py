"""Which packages the distribution holds; everything else is in pyproject.toml.

The alembic migrations live in the top-level `migrations/` folder (the project's layout) but
ship inside the `service` package, as `service.migrations`, so that an installed copy finds
them through the package (service/db.py) and does not put a top-level `migrations` package
into site-packages. pyproject.toml can either list packages or discover them, not both, and a
hand-kept list would silently leave out the next new subpackage: so discovery is done here
and the mapped folder added to it. Both a built wheel and an editable install (setuptools
maps `service.migrations` to the folder) resolve it; tests/test_packaging.py and
scripts/smoke_wheel check both.
"""

from setuptools import find_packages, setup

MIGRATIONS = {
    "service.migrations": "migrations",
    # Not importable (no __init__.py: alembic loads each version by path); listed so that
    # setuptools ships its modules.
    "service.migrations.versions": "migrations/versions",
}

# The operator page's templates (service/web/admin/pages.py reads them from the installed
# package). A folder of data files, not modules; listed so that setuptools ships them as a
# package's data instead of warning that the folder looks like a package it leaves out.
TEMPLATES = ["service.web.templates.admin"]

setup(
    packages=[
        *find_packages(include=["service", "service.*", "workers", "workers.*"]),
        *MIGRATIONS,
        *TEMPLATES,
    ],
    package_dir=MIGRATIONS,
)
