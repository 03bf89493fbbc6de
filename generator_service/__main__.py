"""`python -m generator_service`: serve the generator with uvicorn on the configured host and port."""

import uvicorn

from generator_service.app import create_app
from generator_service.settings import GeneratorSettings
from shared.logging_config import configure_logging


def main() -> None:
    configure_logging("generator")
    settings = GeneratorSettings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        log_config=None,
        access_log=False,  # JSON logs; the shared middleware writes the access lines
        timeout_graceful_shutdown=30,
    )


if __name__ == "__main__":
    main()
