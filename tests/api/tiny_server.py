"""`python -m tests.api.tiny_server`: uvicorn serving the tiny seeded model, for tests that need a real server
but not the built-in model (settings from EXPLAIN_* variables, as `python -m service`)."""

import uvicorn

from service.app import create_app
from service.settings import Settings
from tests.tiny_models import tiny_loaded


def main() -> None:
    settings = Settings(models=["tiny"])
    app = create_app(settings, models={"tiny": tiny_loaded()})
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", timeout_keep_alive=65)


if __name__ == "__main__":
    main()
