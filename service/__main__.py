"""`python -m service`: serve the configured models with uvicorn (settings from EXPLAIN_* variables)."""

import sys

import service.openmp  # noqa: F401  (first: sets OpenMP's spin before torch is imported)
from service.app import create_app
from service.logs import configure_logging
from service.server import serve
from service.settings import Settings


def main() -> int:
    settings = Settings()
    configure_logging(settings.log_level)
    return serve(create_app(settings), settings)


if __name__ == "__main__":
    sys.exit(main())
