__version__ = "0.1.0"


def build_id() -> str:
    """The zipapp's build id (its bootstrap sets BALSAMD_BUILD_ID); "dev" for a source install."""
    import os

    return os.environ.get("BALSAMD_BUILD_ID", "dev")
