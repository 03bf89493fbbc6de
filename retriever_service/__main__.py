"""`python -m retriever_service`: serve the retriever with uvicorn on the configured host and port."""

import uvicorn

from retriever_service.app import create_app
from retriever_service.settings import RetrieverSettings
from shared.logging_config import configure_logging


def main() -> None:
    configure_logging("retriever")
    settings = RetrieverSettings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        log_config=None,
        access_log=False,  # JSON logs; the shared middleware writes the access lines
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
