__version__ = "0.1.0"


def build_id() -> str:
    """Set by the zipapp build (balsamd/_build.py); "dev" for a source checkout."""
    try:
        from balsamd._build import BUILD_ID  # type: ignore[import-not-found]
    except ImportError:
        return "dev"
    return BUILD_ID
