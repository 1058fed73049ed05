"""HTTP API and live dashboard of the appliance (FastAPI + uvicorn).

``create_app(config)`` (edge.api.app) builds the app, ``run_api(config)`` (edge.api.server)
serves it; ``ApiConfig`` (edge.api.config) is the ``[api]`` config section. Importing
this package imports nothing heavy: FastAPI is loaded by the modules that need it.
"""

from .config import ApiConfig, ApiConfigError

__all__ = ["ApiConfig", "ApiConfigError"]
